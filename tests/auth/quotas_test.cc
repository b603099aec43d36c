// The quotas file: inheritance from `*`, `unlimited`, units, every error.
#include "server/auth/quotas.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace logp {
namespace {

QuotaTable ParseOrDie(const std::string& contents) {
  absl::StatusOr<QuotaTable> table = QuotaTable::Parse(contents);
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *std::move(table) : QuotaTable();
}

std::optional<int64_t> Bytes(const std::string& value) {
  absl::StatusOr<QuotaTable> table = QuotaTable::Parse("t stored_bytes=" + value + "\n");
  EXPECT_TRUE(table.ok()) << value << ": " << table.status();
  return table.ok() ? table->For("t").stored_bytes : std::nullopt;
}

TEST(QuotaTableTest, EmptyFileHasNoLimits) {
  const QuotaTable table = ParseOrDie("# none\n\n");
  const TenantQuota q = table.For("team-a");
  EXPECT_FALSE(q.stored_bytes.has_value());
  EXPECT_FALSE(q.datasets.has_value());
  EXPECT_FALSE(q.queued_jobs.has_value());
  EXPECT_FALSE(q.running_jobs.has_value());
  EXPECT_FALSE(q.records_scored_per_second.has_value());
}

TEST(QuotaTableTest, TenantLinesOverrideAndInheritTheStarLine) {
  const QuotaTable table = ParseOrDie(
      "# defaults\n"
      "*\tstored_bytes=10GiB datasets=100 queued_jobs=10 running_jobs=2 "
      "records_scored_per_second=5000\n"
      "team-a datasets=3 records_scored_per_second=unlimited   # small team\n"
      "team-b running_jobs=0\r\n"
      "team-c\n");
  const TenantQuota a = table.For("team-a");
  EXPECT_EQ(a.stored_bytes, int64_t{10} << 30);  // inherited
  EXPECT_EQ(a.datasets, 3);                      // overridden
  EXPECT_EQ(a.queued_jobs, 10);
  EXPECT_EQ(a.running_jobs, 2);
  EXPECT_FALSE(a.records_scored_per_second.has_value());  // unlimited removes the default

  const TenantQuota b = table.For("team-b");
  EXPECT_EQ(b.running_jobs, 0);  // 0 is a limit
  EXPECT_EQ(b.datasets, 100);
  EXPECT_EQ(b.records_scored_per_second, 5000.0);

  for (const char* tenant : {"team-c", "unlisted", "default"}) {
    const TenantQuota q = table.For(tenant);
    EXPECT_EQ(q.stored_bytes, int64_t{10} << 30) << tenant;
    EXPECT_EQ(q.datasets, 100) << tenant;
    EXPECT_EQ(q.queued_jobs, 10) << tenant;
    EXPECT_EQ(q.running_jobs, 2) << tenant;
    EXPECT_EQ(q.records_scored_per_second, 5000.0) << tenant;
  }
}

TEST(QuotaTableTest, WithoutAStarLineOnlyNamedKeysAreLimited) {
  const QuotaTable table = ParseOrDie("team-a datasets=3\n");
  EXPECT_EQ(table.For("team-a").datasets, 3);
  EXPECT_FALSE(table.For("team-a").stored_bytes.has_value());
  EXPECT_FALSE(table.For("team-b").datasets.has_value());
}

TEST(QuotaTableTest, UnlimitedOnTheStarLineIsNoLimit) {
  const QuotaTable table = ParseOrDie("* datasets=unlimited queued_jobs=4\nteam-a queued_jobs=5\n");
  EXPECT_FALSE(table.For("team-b").datasets.has_value());
  EXPECT_EQ(table.For("team-b").queued_jobs, 4);
  EXPECT_EQ(table.For("team-a").queued_jobs, 5);
  EXPECT_FALSE(table.For("team-a").datasets.has_value());
}

TEST(QuotaTableTest, ByteUnits) {
  EXPECT_EQ(Bytes("0"), 0);
  EXPECT_EQ(Bytes("7"), 7);
  EXPECT_EQ(Bytes("1KB"), 1000);
  EXPECT_EQ(Bytes("5MB"), 5000000);
  EXPECT_EQ(Bytes("2GB"), 2000000000);
  EXPECT_EQ(Bytes("3TB"), int64_t{3000000000000});
  EXPECT_EQ(Bytes("1KiB"), 1024);
  EXPECT_EQ(Bytes("3MiB"), 3 * 1024 * 1024);
  EXPECT_EQ(Bytes("10GiB"), int64_t{10} * 1024 * 1024 * 1024);
  EXPECT_EQ(Bytes("2TiB"), int64_t{2} << 40);
  EXPECT_EQ(Bytes("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(Bytes("8388607TiB"), (int64_t{8388607}) << 40);
  EXPECT_EQ(Bytes("unlimited"), std::nullopt);
}

TEST(QuotaTableTest, RecordsScoredPerSecond) {
  EXPECT_EQ(ParseOrDie("t records_scored_per_second=1000\n").For("t").records_scored_per_second,
            1000.0);
  EXPECT_EQ(ParseOrDie("t records_scored_per_second=2.5\n").For("t").records_scored_per_second,
            2.5);
  EXPECT_EQ(ParseOrDie("t records_scored_per_second=0\n").For("t").records_scored_per_second, 0.0);
}

struct BadFile {
  std::string contents;
  std::string message;
};

TEST(QuotaTableTest, EveryParseErrorNamesItsLine) {
  constexpr char kBytes[] =
      ": expected a non-negative integer of bytes, optionally followed by KB, MB, GB, TB (powers "
      "of 1000) or KiB, MiB, GiB, TiB (powers of 1024), or unlimited";
  constexpr char kCount[] = ": expected a non-negative integer or unlimited";
  constexpr char kRate[] =
      ": expected a non-negative decimal number (e.g. 1000 or 2.5) or unlimited";
  const std::vector<BadFile> cases = {
      {"-team datasets=1\n",
       "line 1: invalid tenant '-team': expected * or 1 to 64 characters of [A-Za-z0-9._-], the "
       "first a letter or a digit"},
      {"** datasets=1\n",
       "line 1: invalid tenant '**': expected * or 1 to 64 characters of [A-Za-z0-9._-], the first "
       "a letter or a digit"},
      {"# c\n* datasets=1\n\n* datasets=2\n", "line 4: second line for * (the first is line 2)"},
      {"a datasets=1\nb datasets=1\na queued_jobs=1\n",
       "line 3: second line for tenant 'a' (the first is line 1)"},
      {"a datasets\n", "line 1: 'datasets' is not KEY=VALUE"},
      {"a =3\n", "line 1: '=3' is not KEY=VALUE"},
      {"a stored_bytes=10 GiB\n", "line 1: 'GiB' is not KEY=VALUE"},
      {"a datasets = 3\n", "line 1: 'datasets' is not KEY=VALUE"},
      {"a disk=3\n",
       "line 1: unknown quota 'disk' (expected stored_bytes, datasets, queued_jobs, running_jobs "
       "or records_scored_per_second)"},
      {"a Datasets=3\n",
       "line 1: unknown quota 'Datasets' (expected stored_bytes, datasets, queued_jobs, "
       "running_jobs or records_scored_per_second)"},
      {"a datasets=3 datasets=4\n", "line 1: quota datasets given twice"},
      {"a datasets=3 datasets=unlimited\n", "line 1: quota datasets given twice"},
      {"a datasets=\n", std::string("line 1: datasets=") + kCount},
      {"a datasets=-1\n", std::string("line 1: datasets=-1") + kCount},
      {"a queued_jobs=3.0\n", std::string("line 1: queued_jobs=3.0") + kCount},
      {"a running_jobs=two\n", std::string("line 1: running_jobs=two") + kCount},
      {"a datasets=+3\n", std::string("line 1: datasets=+3") + kCount},
      {"a datasets=99999999999999999999\n",
       "line 1: datasets=99999999999999999999: too large (at most 2^63-1)"},
      {"a stored_bytes=\n", std::string("line 1: stored_bytes=") + kBytes},
      {"a stored_bytes=1.5GiB\n", std::string("line 1: stored_bytes=1.5GiB") + kBytes},
      {"a stored_bytes=10gb\n", std::string("line 1: stored_bytes=10gb") + kBytes},
      {"a stored_bytes=10K\n", std::string("line 1: stored_bytes=10K") + kBytes},
      {"a stored_bytes=GiB\n", std::string("line 1: stored_bytes=GiB") + kBytes},
      {"a stored_bytes=-5\n", std::string("line 1: stored_bytes=-5") + kBytes},
      {"a stored_bytes=9223372036854775808\n",
       "line 1: stored_bytes=9223372036854775808: too large (at most 2^63-1 bytes)"},
      {"a stored_bytes=8388608TiB\n",
       "line 1: stored_bytes=8388608TiB: too large (at most 2^63-1 bytes)"},
      {"a records_scored_per_second=1e3\n",
       std::string("line 1: records_scored_per_second=1e3") + kRate},
      {"a records_scored_per_second=-1\n",
       std::string("line 1: records_scored_per_second=-1") + kRate},
      {"a records_scored_per_second=inf\n",
       std::string("line 1: records_scored_per_second=inf") + kRate},
      {"a records_scored_per_second=.5\n",
       std::string("line 1: records_scored_per_second=.5") + kRate},
      {"a records_scored_per_second=5.\n",
       std::string("line 1: records_scored_per_second=5.") + kRate},
      {"a records_scored_per_second=" + std::string(400, '9') + "\n",
       "line 1: records_scored_per_second=" + std::string(400, '9') + kRate},
  };
  for (const BadFile& c : cases) {
    EXPECT_EQ(QuotaTable::Parse(c.contents).status(), absl::InvalidArgumentError(c.message))
        << c.contents;
  }
}

}  // namespace
}  // namespace logp
