// The effective spec of a training job: its defaults filled in and every field checked, once,
// before the job is stored. Pure: the caller looks the datasets up.
#ifndef LOGP_SERVER_CORE_JOB_SPEC_H_
#define LOGP_SERVER_CORE_JOB_SPEC_H_

#include "absl/status/statusor.h"
#include "logp/v1/dataset_service.pb.h"
#include "logp/v1/job_service.pb.h"

namespace logp {

// `raw` with the values the job stores and trains with: the model spec resolved for the training
// data (ResolveModelSpec in models/model.h); learning rate 1e-3, batch size 100 and 10 epochs
// unless set; and, unless a validation dataset is named, validation fraction 0.1 (at least one
// record) unless set.
//
// `train` is the dataset raw.dataset_id names (the caller answers an empty or unknown id).
// `validation` is the store's answer for the dataset raw.validation_dataset_id names, or null
// when raw names none; its error is reported only once the model spec has passed, its NOT_FOUND
// as "validation dataset '<id>' not found". Otherwise INVALID_ARGUMENT naming the field, or
// FAILED_PRECONDITION when the model family cannot model the training data's kind.
absl::StatusOr<v1::JobSpec> ResolveJobSpec(const v1::JobSpec& raw, const v1::Dataset& train,
                                           const absl::StatusOr<v1::Dataset>* validation);

}  // namespace logp

#endif  // LOGP_SERVER_CORE_JOB_SPEC_H_
