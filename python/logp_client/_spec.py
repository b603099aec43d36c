"""JobSpec from a family name and keyword hyper-parameters."""
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from ._stubs import load

_pb = load()["job_service_pb2"]

# Family name -> the ModelSpec field holding its parameters.
FAMILY_PARAMS = {
    "bernoulli": "bernoulli", "made": "made", "categorical": "categorical",
    "gaussian": "gaussian", "gaussian_mixture": "gaussian_mixture", "fvsbn": "fvsbn",
    "nade": "nade", "maf": "maf", "realnvp": "realnvp", "vae": "vae", "pixelcnn": "pixelcnn",
}


def family_of(family):
    """A ModelFamily from its value, "made", "MADE" or "MODEL_FAMILY_MADE"."""
    if isinstance(family, str):
        name = family.upper().removeprefix("MODEL_FAMILY_")
        try:
            return _pb.ModelFamily.Value("MODEL_FAMILY_" + name)
        except ValueError:
            raise ValueError(f"unknown family {family!r}: one of "
                             f"{', '.join(FAMILY_PARAMS)}") from None
    _pb.ModelFamily.Name(family)  # ValueError if unknown
    return family


def _enum_value(field, value):
    """An enum field's value from its number or its name, whole or without the type's prefix
    (order="random" is VARIABLE_ORDER_RANDOM)."""
    if not isinstance(value, str):
        return value
    names = field.enum_type.values_by_name
    upper = value.upper()
    for name in names:
        if name == upper or name.endswith("_" + upper):
            return names[name].number
    raise ValueError(f"{field.name}={value!r}: one of "
                     f"{', '.join(n for n in names if not n.endswith('_UNSPECIFIED'))}")


def _set(message, name, value):
    field = message.DESCRIPTOR.fields_by_name[name]
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        target = getattr(message, name)
        if isinstance(value, dict):
            json_format.ParseDict(value, target)
        else:
            target.CopyFrom(value)
        return
    if field.type == FieldDescriptor.TYPE_ENUM:
        value = _enum_value(field, value)
    setattr(message, name, value)


def job_spec(dataset_id=None, family=None, spec=None, **hyperparameters):
    """A JobSpec: `spec` (a JobSpec, or a dict in protobuf's JSON mapping) if given, with
    dataset_id, family and every keyword set on top. A keyword names a field of the family's
    params message (hidden_units, order, components, ...), of JobSpec (epochs, batch_size, seed,
    validation_fraction, validation_dataset_id, max_steps, max_seconds,
    early_stopping_patience), of OptimizerSpec (learning_rate, weight_decay), of Regularization
    (l1, dropout) or of Preprocessing (dequantize, levels, logit, logit_alpha)."""
    result = _pb.JobSpec()
    if isinstance(spec, dict):
        json_format.ParseDict(spec, result)
    elif spec is not None:
        result.CopyFrom(spec)
    if dataset_id is not None:
        result.dataset_id = dataset_id
    if family is not None:
        result.model.family = family_of(family)
    if result.model.family == _pb.MODEL_FAMILY_UNSPECIFIED:
        raise ValueError("a job needs a family (family='made', or spec.model.family)")
    family_name = _pb.ModelFamily.Name(result.model.family).removeprefix("MODEL_FAMILY_").lower()
    params = getattr(result.model, FAMILY_PARAMS[family_name])
    targets = [params, result, result.optimizer, result.model.regularization,
               result.model.preprocessing]
    for name, value in hyperparameters.items():
        for message in targets:
            if name in message.DESCRIPTOR.fields_by_name and name not in ("model", "optimizer"):
                _set(message, name, value)
                break
        else:
            raise TypeError(f"{name!r} is not a hyper-parameter of {family_name} nor a field of "
                            "JobSpec, OptimizerSpec, Regularization or Preprocessing")
    return result
