"""DS-1000 results by value: encoded in the candidate's process, rebuilt in the judge's.

`flowsteer.rewards.ds1000_answer` never imports this module: it ships its source to two
sandboxes (`flowsteer.isolation.hidden_tests`). The candidate's process calls `encode` on each variable
its code left (``result`` above all); the encoding is made of builtin values only (lists,
str, int, float, bytes, ...), which the hidden-tests pipe carries as data. The judge's process
calls `decode`, which builds *fresh* numpy/pandas/scipy/torch objects with its own
constructors from that data, so the problem's ``exec_test`` compares objects the candidate
never touched: no ``__eq__`` of the candidate's, no patched library function of its process.

`decode` trusts nothing: array bytes go through ``numpy.frombuffer`` with a dtype that must be
a plain number, bool, string, datetime or timedelta type (never ``object``, structured or
sub-array dtypes) whose size matches the shape; pandas extension dtypes come from a short
list; anything else fails with `ValueError`. No pickle, no ``eval``.

Values (the DS-1000 result types): None, bool, int, float, complex, str, bytes; list, tuple,
set, frozenset, dict of values; named tuples such as scipy's test results (as plain tuples); numpy arrays (object arrays item by item) and scalars; pandas
DataFrame, Series, Index (range, multi, datetime with its ``freq``), Categorical, Timestamp,
Timedelta, NaT, NA, nullable/string arrays; scipy sparse matrices and arrays; torch tensors.
Anything else (a fitted model, a figure, a module) encodes as ``["opaque", type name]`` and
decodes to an `Unjudgeable` that equals nothing and refuses truth tests: the test fails
closed, never passes by accident. The judge turns a node `decode` rejects into an
`Unjudgeable` too, so only a test that reads that variable fails.
"""

import sys

MAX_DEPTH = 200
_PLAIN_KINDS = "biufcmMSU"
_SPARSE = (
    "csr_matrix", "csc_matrix", "coo_matrix", "lil_matrix", "dok_matrix", "bsr_matrix",
    "dia_matrix", "csr_array", "csc_array", "coo_array", "lil_array", "dok_array",
    "bsr_array", "dia_array",
)  # fmt: skip
_EXTENSION = (
    "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype", "UInt8Dtype", "UInt16Dtype",
    "UInt32Dtype", "UInt64Dtype", "Float32Dtype", "Float64Dtype", "BooleanDtype", "StringDtype",
)  # fmt: skip
_BUILTIN = (type(None), bool, int, float, complex, str, bytes)
_SEQUENCES = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset"}


# --- the candidate's side -------------------------------------------------------------------


def _type_name(value):
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _array(value):
    np = sys.modules["numpy"]
    array = np.asarray(value)  # tobytes() is C order whatever the layout
    if array.dtype.hasobject:
        return ["ndo", list(array.shape), [encode(item) for item in array.ravel().tolist()]]
    dtype = array.dtype
    if dtype.kind not in _PLAIN_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        return ["opaque", f"numpy array of dtype {dtype}"]
    return ["nd", dtype.str, list(array.shape), array.tobytes()]


def _column(values):
    """A pandas array (a Series' or an Index's values)."""
    pd = sys.modules["pandas"]
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cats = values.categories
        return ["cat", _array(values.codes), _index(cats), bool(dtype.ordered)]
    if isinstance(dtype, pd.DatetimeTZDtype):
        return ["dtz", _array(values.tz_convert("UTC").tz_localize(None).to_numpy()), str(dtype.tz)]
    if type(dtype).__name__ in _EXTENSION:
        items = [None if item is pd.NA else encode(item) for item in values.tolist()]
        return ["ext", str(dtype), items]
    if isinstance(values, pd.api.extensions.ExtensionArray) and not hasattr(values, "_ndarray"):
        return ["opaque", f"pandas array of dtype {dtype}"]
    return _array(values.to_numpy() if hasattr(values, "to_numpy") else values)


def _index(index):
    pd = sys.modules["pandas"]
    name = encode(index.name) if not isinstance(index, pd.MultiIndex) else None
    if isinstance(index, pd.RangeIndex):
        return ["range", index.start, index.stop, index.step, name]
    if isinstance(index, pd.MultiIndex):
        levels = [_index(level) for level in index.levels]
        codes = [_array(code) for code in index.codes]
        return ["multi", levels, codes, [encode(n) for n in index.names]]
    freq = getattr(index, "freqstr", None)
    return ["index", _column(index.array), name, freq]


def _pandas(value, pd):
    if value is pd.NA:
        return ["na"]
    if value is pd.NaT:
        return ["nat"]
    if isinstance(value, pd.DataFrame):
        columns = [_column(value.iloc[:, i].array) for i in range(value.shape[1])]
        return ["frame", _index(value.columns), _index(value.index), columns]
    if isinstance(value, pd.Series):
        return ["series", _column(value.array), _index(value.index), encode(value.name)]
    if isinstance(value, pd.Index):
        return _index(value)
    if isinstance(value, pd.Categorical):
        return ["categorical", _column(value)]
    if isinstance(value, pd.Timestamp):
        return ["ts", int(value.value), str(value.tz) if value.tz else None, value.unit]
    if isinstance(value, pd.Timedelta):
        return ["td", int(value.value), value.unit]
    return None


def encode(value, depth=0):
    """``value`` as builtin values only (module docstring); ``["opaque", ...]`` if unknown."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    kind = type(value)
    if kind in _BUILTIN:
        return ["py", value]
    if kind in _SEQUENCES:
        return [_SEQUENCES[kind], [encode(item, depth + 1) for item in value]]
    if isinstance(value, tuple) and hasattr(kind, "_fields"):  # a named tuple (scipy results)
        return ["tuple", [encode(item, depth + 1) for item in tuple.__iter__(value)]]
    if kind is dict:
        return ["dict", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]]
    pd = sys.modules.get("pandas")
    if pd is not None:
        encoded = _pandas(value, pd)
        if encoded is not None:
            return encoded
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return _array(value)
    if np is not None and isinstance(value, np.generic):
        return ["npscalar", _array(np.asarray(value))]
    sparse = sys.modules.get("scipy.sparse")
    if sparse is not None and sparse.issparse(value) and kind.__name__ in _SPARSE:
        coo = value.tocoo()
        parts = [_array(coo.data), _array(coo.row), _array(coo.col)]
        return ["sparse", kind.__name__, list(coo.shape), *parts]
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        try:
            return ["torch", _array(value.detach().cpu().numpy())]
        except (TypeError, RuntimeError):
            return ["opaque", f"torch tensor of dtype {value.dtype}"]
    return ["opaque", _type_name(value)]


# --- the judge's side -------------------------------------------------------------------------


class Unjudgeable:
    """A candidate value this codec cannot carry: it equals nothing and has no truth value."""

    __slots__ = ("kind",)
    __hash__ = object.__hash__  # usable as a dict key; equal only to nothing

    def __init__(self, kind):
        self.kind = kind

    def __eq__(self, other):
        raise TypeError(f"a {self.kind} result cannot be judged by value")

    __ne__ = __eq__

    def __bool__(self):
        raise TypeError(f"a {self.kind} result cannot be judged by value")

    def __repr__(self):
        return f"<unjudgeable {self.kind}>"


def _shape(node):
    if type(node) is not list or not all(type(n) is int and n >= 0 for n in node):
        raise ValueError("malformed shape")
    size = 1
    for n in node:
        size *= n
    return tuple(node), size


def _decode_array(node, depth):
    np = __import__("numpy")
    if node[0] == "ndo":
        _, shape, items = node
        shape, size = _shape(shape)
        if type(items) is not list or len(items) != size:
            raise ValueError("object array of the wrong size")
        out = np.empty(size, dtype=object)
        for i, item in enumerate(items):
            out[i] = decode(item, depth + 1)
        return out.reshape(shape)
    tag, dtype, shape, data = node
    if tag != "nd" or type(dtype) is not str or type(data) is not bytes:
        raise ValueError("malformed array")
    dtype = np.dtype(dtype)
    plain = dtype.kind in _PLAIN_KINDS and dtype.fields is None and dtype.subdtype is None
    if not plain or dtype.hasobject:
        raise ValueError(f"dtype {dtype} is not a plain dtype")
    shape, size = _shape(shape)
    if size * dtype.itemsize != len(data):
        raise ValueError("array bytes do not match the shape")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _decode_column(node, depth):
    pd = __import__("pandas")
    tag = node[0]
    if tag == "cat":
        _, codes, categories, ordered = node
        categories = _decode_index(categories, depth)
        return pd.Categorical.from_codes(
            _decode_array(codes, depth), categories=categories, ordered=ordered is True
        )
    if tag == "dtz":
        _, values, tz = node
        naive = pd.DatetimeIndex(_decode_array(values, depth))
        return naive.tz_localize("UTC").tz_convert(str(tz)).array
    if tag == "ext":
        _, name, items = node
        dtype = pd.api.types.pandas_dtype(str(name))
        if type(dtype).__name__ not in _EXTENSION or type(items) is not list:
            raise ValueError(f"extension dtype {name!r} is not supported")
        values = [pd.NA if item is None else decode(item, depth + 1) for item in items]
        return pd.array(values, dtype=dtype)
    if tag == "opaque":
        raise ValueError(f"column values of type {node[1]}")
    return _decode_array(node, depth)


def _decode_index(node, depth):
    pd = __import__("pandas")
    tag = node[0]
    if tag == "range":
        _, start, stop, step, name = node
        return pd.RangeIndex(int(start), int(stop), int(step), name=decode(name, depth + 1))
    if tag == "multi":
        _, levels, codes, names = node
        return pd.MultiIndex(
            levels=[_decode_index(level, depth + 1) for level in levels],
            codes=[_decode_array(code, depth + 1) for code in codes],
            names=[decode(name, depth + 1) for name in names],
        )
    if tag != "index":
        raise ValueError("malformed index")
    _, values, name, freq = node
    values = _decode_column(values, depth + 1)
    name = decode(name, depth + 1)
    if freq is not None:
        return pd.DatetimeIndex(values, freq=str(freq), name=name)
    return pd.Index(values, name=name, dtype=values.dtype)


def decode(node, depth=0):
    """A fresh value rebuilt from `encode`'s output; `ValueError` if it is malformed."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if type(node) is not list or not node or type(node[0]) is not str:
        raise ValueError("malformed value")
    tag = node[0]
    if tag == "py" and len(node) == 2 and type(node[1]) in _BUILTIN:
        return node[1]
    if tag in ("list", "tuple", "set", "frozenset") and type(node[1]) is list:
        items = [decode(item, depth + 1) for item in node[1]]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
    if tag == "dict" and type(node[1]) is list:
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in node[1]}
    if tag == "opaque":
        return Unjudgeable(str(node[1]))
    if tag in ("nd", "ndo"):
        return _decode_array(node, depth)
    if tag == "npscalar":
        return _decode_array(node[1], depth)[()]
    if tag == "torch":
        torch = __import__("torch")
        return torch.from_numpy(_decode_array(node[1], depth))
    if tag == "sparse":
        sparse = __import__("scipy.sparse").sparse
        _, kind, shape, data, row, col = node
        if kind not in _SPARSE:
            raise ValueError(f"sparse type {kind!r} is not supported")
        arrays = [_decode_array(part, depth) for part in (data, row, col)]
        coo = sparse.coo_matrix((arrays[0], (arrays[1], arrays[2])), shape=_shape(shape)[0])
        return getattr(sparse, kind)(coo)
    pd = __import__("pandas")
    if tag == "na":
        return pd.NA
    if tag == "nat":
        return pd.NaT
    if tag == "ts":
        _, nanoseconds, tz, unit = node
        stamp = pd.Timestamp(int(nanoseconds), tz="UTC" if tz else None)
        return (stamp.tz_convert(str(tz)) if tz else stamp).as_unit(str(unit))
    if tag == "td":
        return pd.Timedelta(int(node[1]), unit="ns").as_unit(str(node[2]))
    if tag == "categorical":
        return _decode_column(node[1], depth)
    if tag == "series":
        _, values, index, name = node
        values = _decode_column(values, depth + 1)
        index = _decode_index(index, depth + 1)
        return pd.Series(values, index=index, name=decode(name, depth + 1), copy=True)
    if tag == "frame":
        _, columns, index, values = node
        columns = _decode_index(columns, depth + 1)
        index = _decode_index(index, depth + 1)
        data = {i: _decode_column(column, depth + 1) for i, column in enumerate(values)}
        frame = pd.DataFrame(data, index=index)
        if len(columns) != frame.shape[1]:
            raise ValueError("frame columns do not match its values")
        frame.columns = columns
        return frame
    if tag in ("range", "multi", "index"):
        return _decode_index(node, depth)
    raise ValueError(f"malformed value (tag {tag!r})")
