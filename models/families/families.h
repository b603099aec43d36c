// The FamilyInfo of every family, one function per family file. registry.cc lists them.
#ifndef LOGP_MODELS_FAMILIES_FAMILIES_H_
#define LOGP_MODELS_FAMILIES_FAMILIES_H_

#include "models/density_net.h"

namespace logp {

FamilyInfo BernoulliFamily();
FamilyInfo MadeFamily();
FamilyInfo MafFamily();
FamilyInfo RealNvpFamily();
FamilyInfo VaeFamily();
FamilyInfo CategoricalFamily();
FamilyInfo GaussianFamily();
FamilyInfo GaussianMixtureFamily();
FamilyInfo FvsbnFamily();
FamilyInfo NadeFamily();
FamilyInfo PixelCnnFamily();

}  // namespace logp

#endif  // LOGP_MODELS_FAMILIES_FAMILIES_H_
