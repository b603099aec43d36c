// Records given as plain rows of numbers (google.protobuf.ListValue: in JSON, [[0, 1, ...], ...])
// instead of an encoded RecordBlock: what JSON clients send to Score (ScoreRequest.rows).
#ifndef LOGP_PROTO_CC_JSON_ROWS_H_
#define LOGP_PROTO_CC_JSON_ROWS_H_

#include <google/protobuf/struct.pb.h>

#include "absl/status/status.h"
#include "proto/cc/records.h"

namespace logp {

// Validates `rows` and appends them to `out`, whose kind, cols and num_categories say what is
// allowed (as DecodeAppend does): each row must be a list of exactly out->cols numbers, integers
// in range for binary and categorical data, finite float32 values for continuous data.
// INVALID_ARGUMENT naming the record and column ("record 3, column 7: 0.5 is not an integer");
// RESOURCE_EXHAUSTED beyond `max_rows` rows. On any error `out` is left as it was.
absl::Status AppendRows(const google::protobuf::ListValue& rows, int64_t max_rows,
                        RecordMatrix* out);

}  // namespace logp

#endif  // LOGP_PROTO_CC_JSON_ROWS_H_
