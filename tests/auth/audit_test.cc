// The audit line: JSON string escaping (quotes, backslashes, control characters, UTF-8 valid and
// not), the exact line, and the sinks.
#include "server/auth/audit.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "glog/logging.h"

namespace logp {
namespace {

TEST(JsonStringTest, PlainTextIsQuoted) {
  EXPECT_EQ(JsonString(""), R"("")");
  EXPECT_EQ(JsonString("team-a"), R"("team-a")");
  EXPECT_EQ(JsonString("a/b <c> 'd' \x7f"), "\"a/b <c> 'd' \x7f\"");
}

TEST(JsonStringTest, QuotesAndBackslashes) {
  EXPECT_EQ(JsonString(R"(say "hi")"), R"("say \"hi\"")");
  EXPECT_EQ(JsonString(R"(C:\dir\)"), R"("C:\\dir\\")");
  EXPECT_EQ(JsonString(R"(\")"), R"("\\\"")");
}

TEST(JsonStringTest, ControlCharacters) {
  EXPECT_EQ(JsonString("a\nb\rc\td\be\ff"), R"("a\nb\rc\td\be\ff")");
  EXPECT_EQ(JsonString("\x01\x1f\x1b"), R"("\u0001\u001f\u001b")");
  EXPECT_EQ(JsonString(std::string("a\0b", 3)), R"("a\u0000b")");
}

TEST(JsonStringTest, ValidUtf8IsKept) {
  EXPECT_EQ(JsonString("caf\xc3\xa9"), "\"caf\xc3\xa9\"");            // U+00E9
  EXPECT_EQ(JsonString("\xe2\x82\xac"), "\"\xe2\x82\xac\"");          // U+20AC
  EXPECT_EQ(JsonString("\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\"");  // U+1F600
  EXPECT_EQ(JsonString("\xef\xbf\xbf\xf4\x8f\xbf\xbf"), "\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\"");
  EXPECT_EQ(JsonString("\xc2\x80\xe0\xa0\x80\xf0\x90\x80\x80"),  // the smallest of each length
            "\"\xc2\x80\xe0\xa0\x80\xf0\x90\x80\x80\"");
}

TEST(JsonStringTest, EachByteOfInvalidUtf8BecomesAReplacementCharacter) {
  EXPECT_EQ(JsonString("\xff"), R"("\ufffd")");
  EXPECT_EQ(JsonString("a\x80z"), R"("a\ufffdz")");                            // stray continuation
  EXPECT_EQ(JsonString("\xc3"), R"("\ufffd")");                                // truncated
  EXPECT_EQ(JsonString("\xe2\x82z"), R"("\ufffd\ufffdz")");                    // truncated
  EXPECT_EQ(JsonString("\xc0\xaf"), R"("\ufffd\ufffd")");                      // overlong '/'
  EXPECT_EQ(JsonString("\xe0\x80\xaf"), R"("\ufffd\ufffd\ufffd")");            // overlong
  EXPECT_EQ(JsonString("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")");            // surrogate U+D800
  EXPECT_EQ(JsonString("\xf4\x90\x80\x80"), R"("\ufffd\ufffd\ufffd\ufffd")");  // > U+10FFFF
  EXPECT_EQ(JsonString("\xf8\x88\x80\x80\x80"), R"("\ufffd\ufffd\ufffd\ufffd\ufffd")");
  EXPECT_EQ(JsonString("\xc3\"\xa9"), R"("\ufffd\"\ufffd")");  // a quote inside a sequence
}

AuditRecord Record() {
  AuditRecord r;
  r.time = absl::FromUnixMillis(1715000000123);
  r.tenant = "team-a";
  r.role = "writer";
  r.method = "CreateJob";
  r.resource_id = "job-42";
  r.code = "OK";
  r.via = "token";
  return r;
}

TEST(FormatAuditLineTest, ExactLine) {
  EXPECT_EQ(FormatAuditLine(Record()),
            R"({"time":"2024-05-06T12:53:20.123Z","tenant":"team-a","role":"writer",)"
            R"("method":"CreateJob","resource_id":"job-42","code":"OK","via":"token"})");
}

TEST(FormatAuditLineTest, MillisecondsAreTruncatedAndAlwaysThreeDigits) {
  AuditRecord r = Record();
  r.time = absl::FromUnixMicros(int64_t{1715000000999999});
  EXPECT_EQ(FormatAuditLine(r).substr(0, 35), R"({"time":"2024-05-06T12:53:20.999Z",)");
  r.time = absl::FromUnixSeconds(0);
  EXPECT_EQ(FormatAuditLine(r).substr(0, 35), R"({"time":"1970-01-01T00:00:00.000Z",)");
}

TEST(FormatAuditLineTest, EveryFieldIsEscapedAndEmptyFieldsKept) {
  AuditRecord r = Record();
  r.tenant = "a\"b";
  r.method = "M\n";
  r.resource_id = "";
  r.code = "NOT_FOUND";
  r.via = "certificate";
  r.role = "\\";
  EXPECT_EQ(FormatAuditLine(r),
            R"({"time":"2024-05-06T12:53:20.123Z","tenant":"a\"b","role":"\\",)"
            R"("method":"M\n","resource_id":"","code":"NOT_FOUND","via":"certificate"})");
}

TEST(AuditSinkTest, RecordingSinkKeepsRecordsInOrder) {
  RecordingAuditSink sink;
  AuditRecord second = Record();
  second.method = "GetJob";
  sink.Write(Record());
  sink.Write(second);
  const std::vector<AuditRecord> records = sink.records();
  ASSERT_EQ(records.size(), 2);
  EXPECT_EQ(records[0].method, "CreateJob");
  EXPECT_EQ(records[1].method, "GetJob");
  EXPECT_EQ(sink.lines(),
            (std::vector<std::string>{FormatAuditLine(Record()), FormatAuditLine(second)}));
}

class InfoLines : public google::LogSink {
 public:
  InfoLines() { google::AddLogSink(this); }
  ~InfoLines() override { google::RemoveLogSink(this); }
  void send(google::LogSeverity severity, const char*, const char*, int, const struct ::tm*,
            const char* message, size_t length) override {
    absl::MutexLock lock(&mu_);
    if (severity == google::GLOG_INFO) lines_.emplace_back(message, length);
  }
  std::vector<std::string> lines() {
    absl::MutexLock lock(&mu_);
    return lines_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> lines_;
};

TEST(AuditSinkTest, GlogSinkLogsOneInfoLine) {
  InfoLines info;
  GlogAuditSink sink;
  sink.Write(Record());
  EXPECT_EQ(info.lines(), std::vector<std::string>{"audit " + FormatAuditLine(Record())});
}

}  // namespace
}  // namespace logp
