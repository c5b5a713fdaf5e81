"""A trained model as an ONNX graph that ONNX Runtime runs without JAX: the encoder and head written op by op.

Why by hand rather than through jax2onnx or the Hugging Face export: the encoder is ~15 standard ops per layer
(Gather, MatMul, LayerNormalization, Softmax, Erf), so the graph is short, readable and exactly ours (the same
heads, pooling and padding mask); jax2onnx pins an older orbax-checkpoint than ours and pulls equinox, dm-pix and
netron; the Hugging Face route needs torch at export time, which bertcls never imports. Shapes are dynamic in
batch and length. `quantize_int8` is ONNX Runtime's dynamic quantization (int8 weights of every MatMul,
activations quantized per batch at run time).

Inputs: input_ids, attention_mask (and token_type_ids for BERT) int64 [B, S]. Output: `logits` float32 [B, L]
(a word tagger: [B, S, L]), the raw logits; the calibration is applied by whoever reads them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bertcls.model.bert import BertClassifier
from bertcls.model.config import TOKEN_HEAD, ModelConfig
from bertcls.model.weights import flat_params

OPSET = 17  # LayerNormalization
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class _Graph:
    """Nodes and initializers, named in order; each op helper returns its output's name."""

    def __init__(self, tensors: dict[str, np.ndarray]):
        self.tensors, self.nodes, self.initializers, self._count = tensors, [], [], 0

    def weight(self, path: str) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(self.tensors[path], np.float32), path))
        return path

    def const(self, value, dtype=np.float32) -> str:
        name = f"const_{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, kind: str, *inputs: str, **attrs) -> str:
        self._count += 1
        out = f"{kind.lower()}_{self._count}"
        self.nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def dense(self, x: str, prefix: str) -> str:
        """x @ kernel + bias on the last axis."""
        return self.op("Add", self.op("MatMul", x, self.weight(f"{prefix}.kernel")), self.weight(f"{prefix}.bias"))

    def layer_norm(self, x: str, prefix: str, eps: float) -> str:
        scale, bias = self.weight(f"{prefix}.scale"), self.weight(f"{prefix}.bias")
        return self.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=eps)

    def activation(self, name: str, x: str) -> str:
        """The HF config's hidden activation: exact GELU (Erf), tanh-approximated GELU, or ReLU."""
        if name == "gelu":
            erf = self.op("Erf", self.op("Mul", x, self.const(1 / math.sqrt(2))))
            return self.op("Mul", self.op("Mul", x, self.const(0.5)), self.op("Add", erf, self.const(1.0)))
        if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
            cube = self.op("Mul", self.op("Mul", x, x), x)
            inner = self.op("Add", x, self.op("Mul", cube, self.const(0.044715)))
            tanh = self.op("Tanh", self.op("Mul", inner, self.const(math.sqrt(2 / math.pi))))
            return self.op("Mul", self.op("Mul", x, self.const(0.5)), self.op("Add", tanh, self.const(1.0)))
        return self.op("Relu", x)


def _embeddings(g: _Graph, config: ModelConfig) -> str:
    """Word + position (+ token type) embeddings, LayerNorm: [B, S, H]."""
    prefix = "encoder.embeddings"
    words = g.op("Gather", g.weight(f"{prefix}.word.embedding"), "input_ids")  # [B, S, H]
    length = g.op("Shape", "input_ids", start=1, end=2)  # [1]: S
    positions = g.op("Slice", g.weight(f"{prefix}.position.embedding"), g.const([0], np.int64), length)  # [S, H]
    x = g.op("Add", words, positions)
    if config.type_vocab_size > 0:
        x = g.op("Add", x, g.op("Gather", g.weight(f"{prefix}.token_type.embedding"), "token_type_ids"))
    return g.layer_norm(x, f"{prefix}.norm", config.layer_norm_eps)


def _attention(g: _Graph, x: str, keep: str, config: ModelConfig, prefix: str) -> str:
    """Multi-head self-attention over [B, S, H]; padded keys get the lowest float before the softmax."""
    heads, head_dim = config.num_heads, config.head_dim
    split = g.const([0, 0, heads, head_dim], np.int64)

    def projected(name: str, perm: list[int]) -> str:
        return g.op("Transpose", g.op("Reshape", g.dense(x, f"{prefix}.{name}"), split), perm=perm)

    q = projected("query", [0, 2, 1, 3])  # [B, N, S, D]
    k = projected("key", [0, 2, 3, 1])  # [B, N, D, S]
    v = projected("value", [0, 2, 1, 3])  # [B, N, S, D]
    scores = g.op("Mul", g.op("MatMul", q, k), g.const(head_dim**-0.5))  # [B, N, S, S]
    scores = g.op("Where", keep, scores, g.const(np.finfo(np.float32).min))
    context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)  # [B, N, S, D]
    merged = g.op(
        "Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), g.const([0, 0, config.hidden_size], np.int64)
    )
    return g.dense(merged, f"{prefix}.output")  # [B, S, H]


def _layer(g: _Graph, x: str, keep: str, config: ModelConfig, index: int) -> str:
    """Post-LN transformer block: LN(x + attention(x)), then LN(x + ffn(x))."""
    prefix = f"encoder.layers.{index}"
    x = g.layer_norm(
        g.op("Add", x, _attention(g, x, keep, config, f"{prefix}.attention")),
        f"{prefix}.attention_norm",
        config.layer_norm_eps,
    )
    hidden = g.activation(config.hidden_act, g.dense(x, f"{prefix}.ffn_in"))  # [B, S, I]
    return g.layer_norm(
        g.op("Add", x, g.dense(hidden, f"{prefix}.ffn_out")), f"{prefix}.ffn_norm", config.layer_norm_eps
    )


def _pooled(g: _Graph, hidden: str, config: ModelConfig) -> str:
    """The sentence vector [B, H]: the masked mean of the states, the pooler on [CLS], or [CLS] itself."""
    if config.head == "mean":
        weights = g.op("Unsqueeze", g.op("Cast", "attention_mask", to=TensorProto.FLOAT), g.const([-1], np.int64))
        axis = g.const([1], np.int64)
        total = g.op("ReduceSum", g.op("Mul", hidden, weights), axis, keepdims=0)  # [B, H]
        count = g.op("Max", g.op("ReduceSum", weights, axis, keepdims=0), g.const(1.0))  # [B, 1]
        return g.op("Div", total, count)
    cls_state = g.op("Gather", hidden, g.const(0, np.int64), axis=1)  # [B, H]
    if config.head == "linear" and config.use_pooler:
        pooled = g.dense(cls_state, "pooler.dense")
        return g.op("Relu" if config.model_type == "distilbert" else "Tanh", pooled)
    return cls_state


def _head(g: _Graph, x: str, config: ModelConfig) -> str:
    """Logits from the pooled vector (or every token's state): linear, or the MLP's two norm + relu blocks."""
    if config.head != "mlp":
        return g.dense(x, "head.output")
    for block in ("1", "2"):
        dense = g.dense(x, f"head.dense{block}")
        if config.head_batchnorm:  # its running averages, as the model predicts
            names = [g.weight(f"head.norm{block}.{p}") for p in ("scale", "bias", "mean", "var")]
            normed = g.op("BatchNormalization", dense, *names, epsilon=1e-5)
        else:
            normed = g.layer_norm(dense, f"head.norm{block}", config.layer_norm_eps)
        x = g.op("Relu", normed)
    return g.dense(x, "head.output")


def build_onnx(model: BertClassifier) -> onnx.ModelProto:
    """The model's forward pass in eval mode as an ONNX model (float32, dynamic batch and length)."""
    config = model.config
    g = _Graph(flat_params(model))
    mask_bool = g.op("Cast", "attention_mask", to=TensorProto.BOOL)
    keep = g.op("Unsqueeze", mask_bool, g.const([1, 2], np.int64))  # [B, 1, 1, S]: which keys are real
    x = _embeddings(g, config)
    for index in range(config.num_layers):
        x = _layer(g, x, keep, config, index)
    logits = _head(g, x if config.head == TOKEN_HEAD else _pooled(g, x, config), config)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    names = INPUTS if config.type_vocab_size > 0 else INPUTS[:2]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in names]
    out_shape = ["batch", "sequence", config.num_labels] if config.head == TOKEN_HEAD else ["batch", config.num_labels]
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(g.nodes, "bertcls", inputs, [output], g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bertcls")
    onnx.checker.check_model(proto, full_check=True)
    return proto


def write_onnx(model: BertClassifier, path: Path) -> Path:
    """Write the float32 graph (weights inside: BERT-base is ~440 MB, under protobuf's 2 GB)."""
    onnx.save_model(build_onnx(model), str(path))
    return path


def quantize_int8(source: Path, target: Path) -> Path:
    """ONNX Runtime's dynamic quantization: int8 MatMul weights, activations quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return target


def session(path: Path, threads: int = 0):
    """An ONNX Runtime CPU session for the file (threads 0: ONNX Runtime's default, one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_logits(sess, batch: dict[str, np.ndarray]) -> np.ndarray:
    """Logits for one collated batch (our int32 arrays cast to the graph's int64)."""
    wanted = {i.name for i in sess.get_inputs()}
    feed = {name: np.asarray(batch[name], np.int64) for name in INPUTS if name in wanted}
    return sess.run(["logits"], feed)[0]
