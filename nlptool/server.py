"""`nlptool serve`: an HTTP server for exports that speaks TF Serving's REST API.

The endpoints, request and response bodies are TF Serving's (its REST API
reference, "RESTful API"), so a client written against this server works
unchanged against a TF Serving model server holding the same export:

    GET  /v1/models/NAME[/versions/N]             the model's status
    GET  /v1/models/NAME[/versions/N]/metadata    its signature definitions
    POST /v1/models/NAME[/versions/N]:predict     {"signature_name": ..., "instances": [...]}
                                                  or {"signature_name": ..., "inputs": {...}}

The row format (`instances`) stacks one value (or one object of named
values) per row along a new first dimension, so it suits signatures whose
inputs all have a batch dimension; a signature with scalar inputs (the
decoding options: max_new_tokens, beam_width, ...) takes the columnar
format (`inputs`), where each input has the signature's own shape. Errors
answer 400 (404 for an unknown model, version or path) with TF Serving's
body, {"error": "..."}.

Concurrent row-format requests to the same signature are merged into one
model call (as TF Serving's batching does): while the model computes one
batch, the requests that arrive wait, and the next call takes them
together, up to `max_batch_size` rows (optionally waiting `batch_timeout_ms`
for more). Every request is checked before it reaches the model: its size,
rows, string lengths, input names, types and shapes.
"""

import base64
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

# numpy, asyncio and TensorFlow are imported where they are used: the
# command line reads Limits' defaults when it starts, and stays instant.

log = logging.getLogger("nlptool.serve")

DEFAULT_PORT = 8501  # TF Serving's REST port


@dataclass(frozen=True)
class Limits:
    """What one request may hold, and how concurrent requests are batched."""

    max_request_bytes: int = 1 << 20
    max_rows: int = 256  # rows (strings) of one request
    max_text_length: int = 10_000  # characters of one string
    max_batch_size: int = 64  # rows of concurrent requests merged into one model call
    batch_timeout_ms: float = 0.0  # extra wait for more requests before a call (0: take what has arrived)


class RequestError(Exception):
    """A request the server answers with `status` and {"error": message}."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


# === the model ===


@dataclass
class Signature:
    name: str
    function: object  # the concrete function of tf.saved_model.load
    inputs: dict  # input name -> (numpy dtype, shape with None for any size)
    outputs: list
    batched: bool  # every input and output has a batch dimension first: requests may be merged


class ServedModel:
    """The export that a server serves: its latest version, loaded with
    `tf.saved_model.load`, and its signature definitions as TF Serving
    reports them."""

    def __init__(self, path, name=None):
        import numpy as np

        from nlptool import runs

        exported = runs.Exported(path)  # registers tensorflow-text's ops when the export needs them
        self.path = exported.path
        self.task = exported.task
        self.name = name or exported.task.name
        self.version = int(self.path.name) if self.path.name.isdigit() else 1
        self._exported = exported  # owns the variables the functions read
        self.signature_defs = _signature_defs(self.path)
        self.signatures = {}
        for key, function in exported.signatures.items():
            specs = function.structured_input_signature[1]
            outputs = function.structured_outputs
            inputs = {name: (np.dtype(spec.dtype.as_numpy_dtype), spec.shape.as_list()) for name, spec in specs.items()}
            batched = (
                bool(inputs)
                # a batch dimension first and no other of unknown size: requests concatenate
                and all(len(shape) >= 1 and shape[0] is None and None not in shape[1:] for _, shape in inputs.values())
                and all(spec.shape.rank and spec.shape[0] is None for spec in outputs.values())
            )
            self.signatures[key] = Signature(key, function, inputs, sorted(outputs), batched)

    def call(self, signature, inputs):
        """The signature's outputs (name -> numpy array) on numpy inputs."""
        import tensorflow as tf

        arguments = {name: tf.constant(value) for name, value in inputs.items()}
        return {name: value.numpy() for name, value in signature.function(**arguments).items()}

    def metadata(self):
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": self.signature_defs}},
        }

    def status(self):
        return {
            "model_version_status": [
                {
                    "version": str(self.version),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }


def _signature_defs(saved_model):
    """The MetaGraph's signature definitions as TF Serving's metadata prints them (proto field names)."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((Path(saved_model) / "saved_model.pb").read_bytes())
    graph = next(g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags)
    return {
        name: json_format.MessageToDict(
            definition, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        for name, definition in graph.signature_def.items()
    }


# === requests ===


def parse_predict(body, model, limits):
    """(signature, numpy inputs, rows, row format?) of a predict request body; RequestError if it is not one."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(f"JSON Parse error: {error}") from None
    if not isinstance(request, dict):
        raise RequestError("The request body must be a JSON object with 'instances' or 'inputs'.")
    name = request.get("signature_name", "serving_default")
    if not isinstance(name, str) or name not in model.signatures:
        raise RequestError(
            f"Serving signature name: {json.dumps(name)} not found in signature def "
            f"(signatures: {', '.join(sorted(model.signatures))})."
        )
    signature = model.signatures[name]
    if ("instances" in request) == ("inputs" in request):
        raise RequestError("The request must have exactly one of 'instances' (row format) and 'inputs' (columnar).")
    if "instances" in request:
        inputs, rows = _rows(request["instances"], signature, limits)
    else:
        inputs, rows = _columns(request["inputs"], signature, limits)
    return signature, inputs, rows, "instances" in request


def _rows(instances, signature, limits):
    if not isinstance(instances, list):
        raise RequestError("'instances' must be a list, one entry a row.")
    if len(instances) > limits.max_rows:
        raise RequestError(f"'instances' has {len(instances)} rows; the limit is {limits.max_rows} (--max-rows).")
    scalar = [name for name, (_, shape) in signature.inputs.items() if not shape]
    if scalar:
        raise RequestError(
            f"The signature {signature.name!r} has inputs without a batch dimension ({', '.join(scalar)}): "
            'send them in the columnar format, {"inputs": {...}}.'
        )
    import numpy as np

    names = list(signature.inputs)
    rows = {name: [] for name in names}
    for i, instance in enumerate(instances):
        if len(names) == 1 and not (isinstance(instance, dict) and not _is_b64(instance)):
            instance = {names[0]: instance}
        if not isinstance(instance, dict):
            raise RequestError(f"instances[{i}] must be an object with the inputs {', '.join(names)}.")
        unknown = sorted(set(instance) - set(names))
        if unknown:
            raise RequestError(f"instances[{i}] has no input named {unknown[0]!r} (inputs: {', '.join(names)}).")
        missing = [name for name in names if name not in instance]
        if missing:
            raise RequestError(f"instances[{i}] lacks the input {missing[0]!r}.")
        for name, (dtype, shape) in signature.inputs.items():
            rows[name].append(_tensor(instance[name], dtype, shape[1:], f"instances[{i}].{name}", limits))
    inputs = {}
    for name, (dtype, shape) in signature.inputs.items():
        empty = np.zeros([0, *[d or 0 for d in shape[1:]]], dtype)
        try:
            inputs[name] = np.stack(rows[name]) if rows[name] else empty
        except ValueError:
            raise RequestError(f"instances[].{name}: rows of different shapes cannot be stacked.") from None
    return inputs, len(instances)


def _columns(values, signature, limits):
    names = list(signature.inputs)
    if len(names) == 1 and not (isinstance(values, dict) and not _is_b64(values)):
        values = {names[0]: values}
    if not isinstance(values, dict):
        raise RequestError(f"'inputs' must be an object with the inputs {', '.join(names) or '(none)'}.")
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise RequestError(f"'inputs' has no input named {unknown[0]!r} (inputs: {', '.join(names) or '(none)'}).")
    missing = [name for name in names if name not in values]
    if missing:
        raise RequestError(f"'inputs' lacks the input {missing[0]!r}.")
    inputs = {
        name: _tensor(values[name], dtype, shape, f"inputs.{name}", limits)
        for name, (dtype, shape) in signature.inputs.items()
    }
    rows = max([value.shape[0] for value in inputs.values() if value.ndim] or [1])
    if rows > limits.max_rows:
        raise RequestError(f"'inputs' has {rows} rows; the limit is {limits.max_rows} (--max-rows).")
    return inputs, rows


def _is_b64(value):
    return isinstance(value, dict) and list(value) == ["b64"]


def _tensor(value, dtype, shape, where, limits):
    import numpy as np

    """`value` (nested lists) as a numpy array of `dtype` whose shape fits `shape`."""
    found = _shape(value, where)
    if len(found) != len(shape) or any(want is not None and want != got for want, got in zip(shape, found)):
        expected = "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
        raise RequestError(f"{where} has the shape {list(found)}; the signature expects {expected}.")
    flat = _leaves(value)
    if dtype.kind == "O":  # tf.string
        items = []
        for leaf in flat:
            if _is_b64(leaf):
                try:
                    leaf = base64.b64decode(leaf["b64"], validate=True)
                except (ValueError, TypeError):
                    raise RequestError(f"{where}: a 'b64' value that is not base64.") from None
            elif isinstance(leaf, str):
                if len(leaf) > limits.max_text_length:
                    raise RequestError(
                        f"{where}: a string of {len(leaf):,} characters; the limit is "
                        f"{limits.max_text_length:,} (--max-text-length)."
                    )
                try:
                    leaf = leaf.encode("utf-8")
                except UnicodeEncodeError:
                    raise RequestError(
                        f"{where}: a string with an unpaired surrogate (\\ud800-\\udfff), not text."
                    ) from None
            else:
                raise RequestError(f"{where} must hold strings; found {_json_type(leaf)}.")
            items.append(leaf)
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return array.reshape(found)
    if dtype.kind in "iub":
        wanted = bool if dtype.kind == "b" else int
        bad = next((leaf for leaf in flat if type(leaf) is not wanted), None)
        if bad is not None:
            kind = "booleans" if wanted is bool else "whole numbers"
            raise RequestError(f"{where} must hold {kind}; found {_json_type(bad)}.")
        info = None if dtype.kind == "b" else np.iinfo(dtype)
        if info is not None and any(not info.min <= leaf <= info.max for leaf in flat):
            raise RequestError(f"{where}: a number outside the range of {dtype.name}.")
    else:
        bad = next((leaf for leaf in flat if isinstance(leaf, bool) or not isinstance(leaf, int | float)), None)
        if bad is not None:
            raise RequestError(f"{where} must hold numbers; found {_json_type(bad)}.")
    return np.array(flat, dtype=dtype).reshape(found)


def _shape(value, where):
    if not isinstance(value, list):
        return ()
    inner = [_shape(item, where) for item in value]
    if any(shape != inner[0] for shape in inner):
        raise RequestError(f"{where}: lists of different lengths (a tensor must be rectangular).")
    return (len(value), *(inner[0] if inner else ()))


def _leaves(value):
    if not isinstance(value, list):
        return [value]
    return [leaf for item in value for leaf in _leaves(item)]


def _json_type(value):
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number", dict: "an object"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


# === responses ===


def _plain(array):
    import numpy as np

    if array.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8", errors="replace"), otypes=[object])(array).tolist()
    return array.tolist()


def predict_response(outputs, rows, row_format):
    """TF Serving's predict response: {"predictions": one entry a row} or {"outputs": ...}."""
    names = sorted(outputs)
    if not row_format:
        columns = {name: _plain(outputs[name]) for name in names}
        return {"outputs": columns[names[0]] if len(names) == 1 else columns}
    for name in names:
        if outputs[name].ndim == 0 or outputs[name].shape[0] != rows:
            raise RequestError(
                f'The output {name!r} has no row per instance; use the columnar format, {{"inputs": ...}}.'
            )
    columns = {name: _plain(outputs[name]) for name in names}
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    return {"predictions": [{name: columns[name][i] for name in names} for i in range(rows)]}


# === batching ===


class Batcher:
    """Merges concurrent row requests to one batched signature into one model call."""

    def __init__(self, model, signature, executor, limits):
        import asyncio

        self.model, self.signature, self.executor, self.limits = model, signature, executor, limits
        self.queue = asyncio.Queue()
        self.carried = None  # a request that did not fit the previous batch
        self.worker = None
        self.calls = self.rows = 0  # model calls made and rows they held (the batching ratio)

    async def __call__(self, inputs, rows):
        import asyncio

        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._work())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((inputs, rows, future))
        return await future

    async def _next(self, timeout):
        import asyncio

        if self.carried is not None:
            item, self.carried = self.carried, None
            return item
        if timeout is None:
            return await self.queue.get()
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            if timeout <= 0:
                return None
            try:
                return await asyncio.wait_for(self.queue.get(), timeout)
            except TimeoutError:
                return None

    async def _work(self):
        import asyncio

        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._next(None)]
            total = batch[0][1]
            deadline = loop.time() + self.limits.batch_timeout_ms / 1000
            while total < self.limits.max_batch_size:
                item = await self._next(deadline - loop.time())
                if item is None:
                    break
                if total + item[1] > self.limits.max_batch_size:
                    self.carried = item
                    break
                batch.append(item)
                total += item[1]
            try:
                await self._run(loop, batch, total)
            except Exception:  # the worker must outlive any failure, and no request may wait forever
                log.exception("batching failed")
                for _, _, future in batch:
                    _settle(future, error=RequestError("The server failed to batch this request.", 500))

    async def _run(self, loop, batch, total):
        import numpy as np

        merged = {name: np.concatenate([inputs[name] for inputs, _, _ in batch]) for name in self.signature.inputs}
        try:
            outputs = await loop.run_in_executor(self.executor, self.model.call, self.signature, merged)
        except Exception:
            if len(batch) == 1:
                _settle(batch[0][2], error=_model_error())
                return
            for inputs, _, future in batch:  # one request's failure must not fail the others
                try:
                    _settle(future, await loop.run_in_executor(self.executor, self.model.call, self.signature, inputs))
                except Exception:
                    _settle(future, error=_model_error())
            return
        self.calls += 1
        self.rows += total
        start = 0
        for _, rows, future in batch:
            _settle(future, {name: value[start : start + rows] for name, value in outputs.items()})
            start += rows


def _settle(future, result=None, error=None):
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _model_error():
    """The model's own refusal (a failed check, a bad argument) as a 400; anything else as a 500."""
    import sys

    import tensorflow as tf

    error = sys.exc_info()[1]
    if isinstance(error, tf.errors.InvalidArgumentError):
        return RequestError(_first_line(error.message))
    log.exception("the model failed")
    return RequestError(f"The model failed: {type(error).__name__}: {_first_line(str(error))}", 500)


def _first_line(message):
    """What a TensorFlow error says, without its "Graph execution error" and node frames."""
    frames = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ", "Traceback")
    lines = [line.strip() for line in message.splitlines()]
    said = [line for line in lines if line and not line.startswith(frames)]
    return (said or lines or [""])[0]


# === the application ===

_PATH = re.compile(
    r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?::(?P<verb>[A-Za-z]+)|/(?P<metadata>metadata))?$"
)


def create_app(model, limits=Limits(), model_threads=1):
    """The Starlette application serving `model` (a ServedModel)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    executor = ThreadPoolExecutor(max_workers=model_threads, thread_name_prefix="model")
    batchers = {}

    def answer(payload, status=200):
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return Response(body, status_code=status, media_type="application/json")

    async def read_body(request):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_request_bytes:
            raise RequestError(f"The request has {int(declared):,} bytes; the limit is {limits.max_request_bytes:,}.")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_request_bytes:
                raise RequestError(f"The request has over {limits.max_request_bytes:,} bytes, the limit.")
            chunks.append(chunk)
        return b"".join(chunks)

    async def predict(request):
        body = await read_body(request)
        signature, inputs, rows, row_format = parse_predict(body, model, limits)
        request.state.rows = rows
        loop = asyncio.get_running_loop()
        if row_format and signature.batched and limits.max_batch_size > 1 and rows <= limits.max_batch_size:
            if signature.name not in batchers:
                batchers[signature.name] = Batcher(model, signature, executor, limits)
            outputs = await batchers[signature.name](inputs, rows)
        else:
            try:
                outputs = await loop.run_in_executor(executor, model.call, signature, inputs)
            except Exception:
                raise _model_error() from None
        return answer(predict_response(outputs, rows, row_format))

    async def endpoint(request):
        start = time.perf_counter()
        request.state.rows = 0
        try:
            match = _PATH.match(request.path_params["rest"])
            if match is None:
                raise RequestError(f"Malformed request: {request.method} {request.url.path}", 404)
            if match["name"] != model.name:
                raise RequestError(f"Servable not found for request: Latest({match['name']})", 404)
            version = match["version"]
            if version is not None and version != str(model.version):
                raise RequestError(f"Servable not found for request: Specific({model.name}, {version})", 404)
            if match["label"] is not None:
                raise RequestError(
                    f"No version label {match['label']!r}: this server serves version {model.version}.", 404
                )
            if request.method == "GET" and match["verb"] is None:
                response = answer(model.metadata() if match["metadata"] else model.status())
            elif request.method == "POST" and match["verb"] == "predict" and not match["metadata"]:
                response = await predict(request)
            elif request.method == "POST" and match["verb"] in ("classify", "regress"):
                raise RequestError(f"{match['verb']} is not served here (no Classify/Regress signature): use :predict.")
            else:
                raise RequestError(f"Malformed request: {request.method} {request.url.path}", 404)
        except RequestError as error:
            response = answer({"error": str(error)}, error.status)
        log.info(
            '%s "%s %s" %d %.1f ms rows=%d',
            request.client.host if request.client else "-",
            request.method,
            request.url.path,
            response.status_code,
            1e3 * (time.perf_counter() - start),
            request.state.rows,
        )
        return response

    async def not_found(request):
        log.info('%s "%s %s" 404', request.client.host if request.client else "-", request.method, request.url.path)
        return answer({"error": f"Malformed request: {request.method} {request.url.path}"}, 404)

    app = Starlette(
        routes=[
            Route("/v1/models/{rest:path}", endpoint, methods=["GET", "POST"]),
            Route("/{rest:path}", not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]
    )
    app.state.batchers = batchers
    return app


def serve(path, host="127.0.0.1", port=DEFAULT_PORT, name=None, limits=Limits(), model_threads=1, say=print):
    """Serve the export at `path` until interrupted."""
    import uvicorn

    model = ServedModel(path, name)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    app = create_app(model, limits, model_threads)
    say(
        f"serving {model.path} as {model.name!r} (version {model.version}, {model.task.name}; "
        f"signatures: {', '.join(sorted(model.signatures))})\n"
        f"  http://{host}:{port}/v1/models/{model.name}:predict"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
