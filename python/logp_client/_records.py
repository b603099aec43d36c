"""numpy arrays <-> RecordBlock (proto/logp/v1/records.proto)."""
import numpy as np

from ._stubs import load

_pb = load()["records_pb2"]

KINDS = {"binary": _pb.DATA_KIND_BINARY, "categorical": _pb.DATA_KIND_CATEGORICAL,
         "continuous": _pb.DATA_KIND_CONTINUOUS}


def kind_of(kind):
    """A DataKind from its enum value, "binary"/"categorical"/"continuous" or "DATA_KIND_..."."""
    if isinstance(kind, str):
        name = kind.lower().removeprefix("data_kind_")
        if name not in KINDS:
            raise ValueError(f"unknown kind {kind!r}: binary, categorical or continuous")
        return KINDS[name]
    if kind not in KINDS.values():
        raise ValueError(f"unknown kind {kind!r}")
    return kind


def as_matrix(array):
    """(N x D ndarray, image shape or None): a 1-D array is one record; an array of more than two
    dimensions is N records of shape (H, W) or (H, W, C), flattened row-major."""
    a = np.asarray(array)
    if a.ndim == 1:
        return a.reshape(1, -1), None
    if a.ndim == 2:
        return a, None
    if a.ndim in (3, 4):
        h, w, c = (a.shape[1:] + (1,))[:3]
        return a.reshape(a.shape[0], -1), (h, w, c)
    raise ValueError(f"records must be an array of 1 to 4 dimensions, not {a.ndim}")


def _first_bad(mask):
    r, c = np.argwhere(mask)[0]
    return f"record {r}, column {c}"


def _integers(a, high, what):
    """a as integers in [0, high], or ValueError naming the first value that is not one."""
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{what} records must be numbers, not {a.dtype}")
    bad = ~((a >= 0) & (a <= high))
    if np.issubdtype(a.dtype, np.floating):
        bad |= ~np.isfinite(a)
        bad[~bad] |= a[~bad] != np.floor(a[~bad])
    if bad.any():
        raise ValueError(f"{_first_bad(bad)}: {a[bad][0]!r} is not a {what} value "
                         f"(an integer in 0..{high})")
    return a.astype(np.uint16 if high > 255 else np.uint8)


def prepare(matrix, kind, num_categories=0):
    """(encoding, rows) for N x D `matrix` of `kind`, ready for encode(). Binary records of 0s and
    1s are bit-packed; other integers up to 255 are sent as UINT8 for the server to name the
    record and column; values no encoding can carry (negative, fractional, too large) are
    ValueError here."""
    if kind == _pb.DATA_KIND_BINARY:
        rows = _integers(matrix, 255, "binary")
        if np.all(rows <= 1):
            return _pb.ENCODING_BITPACKED, rows
        return _pb.ENCODING_UINT8, rows
    if kind == _pb.DATA_KIND_CATEGORICAL:
        wide = num_categories > 256
        rows = _integers(matrix, 65535 if wide else 255, "categorical")
        return (_pb.ENCODING_UINT16_LE if wide else _pb.ENCODING_UINT8), rows
    if kind == _pb.DATA_KIND_CONTINUOUS:
        if not (np.issubdtype(matrix.dtype, np.number) or matrix.dtype == np.bool_):
            raise ValueError(f"continuous records must be numbers, not {matrix.dtype}")
        return _pb.ENCODING_FLOAT32_LE, np.ascontiguousarray(matrix, dtype="<f4")
    raise ValueError(f"unknown kind {kind!r}")


def row_bytes(encoding, dim):
    return {_pb.ENCODING_BITPACKED: (dim + 7) // 8, _pb.ENCODING_UINT8: dim,
            _pb.ENCODING_UINT16_LE: 2 * dim, _pb.ENCODING_FLOAT32_LE: 4 * dim}[encoding]


def encode(encoding, rows):
    """A RecordBlock of the prepared `rows`."""
    if encoding == _pb.ENCODING_BITPACKED:
        data = np.packbits(rows, axis=1).tobytes()
    elif encoding == _pb.ENCODING_UINT16_LE:
        data = rows.astype("<u2").tobytes()
    else:
        data = np.ascontiguousarray(rows).tobytes()
    return _pb.RecordBlock(encoding=encoding, num_records=rows.shape[0], dim=rows.shape[1],
                           data=data)


def decode(block):
    """The N x D ndarray of a RecordBlock: uint8 for bit-packed and UINT8, uint16 for UINT16_LE,
    float32 for FLOAT32_LE."""
    n, d = block.num_records, block.dim
    if block.encoding == _pb.ENCODING_BITPACKED:
        packed = np.frombuffer(block.data, np.uint8).reshape(n, (d + 7) // 8)
        return np.unpackbits(packed, axis=1, count=d)
    dtype = {_pb.ENCODING_UINT8: np.uint8, _pb.ENCODING_UINT16_LE: np.dtype("<u2"),
             _pb.ENCODING_FLOAT32_LE: np.dtype("<f4")}.get(block.encoding)
    if dtype is None:
        raise ValueError(f"unknown record encoding {block.encoding}")
    values = np.frombuffer(block.data, dtype).reshape(n, d)
    return values.astype(np.dtype(dtype).newbyteorder("="))
