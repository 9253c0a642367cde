"""ModelSpec: every contract case the reader must handle, checked by classifying images correctly."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from auditor.errors import ModelContractError, UsageError
from auditor.models.inputs import decode_output, encode_input
from auditor.models.onnx import OnnxClassifier, OnnxImageModel
from auditor.models.onnx_file import load_onnx_proto
from auditor.models.spec import read_spec
from onnx_factory import brightness_images, make_classifier

CLASSES = ["normal", "pneumonia", "pneumothorax"]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("scaling", ["unit", "0-255", "imagenet", "minus1-1"])
@pytest.mark.parametrize("output", ["logits", "probabilities"])
@pytest.mark.parametrize("size", [32, None])
def test_contract_matrix_classifies_correctly(tmp_path, layout, channels, scaling, output, size):
    path = make_classifier(
        tmp_path / "m.onnx",
        layout=layout,
        channels=channels,
        size=size,
        scaling=scaling,
        output=output,
        class_names=CLASSES,
    )
    overrides = {"image_size": 32} if size is None else {}
    spec = read_spec(path, overrides=overrides)
    assert (spec.layout, spec.channels, spec.scaling, spec.output_kind) == (layout, channels, scaling, output)
    assert spec.class_names == tuple(CLASSES)
    assert spec.dynamic_size == (size is None)
    assert (spec.height, spec.width) == (32, 32)
    model = OnnxClassifier(path, spec=spec)
    x, y = brightness_images(4, 32)
    p = model.predict_proba(x, batch_size=5)
    assert p.shape == (12, 3)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert (p.argmax(1) == y).all()


def test_wrong_scaling_breaks_predictions(tmp_path):
    """Sanity check of the test model itself: a 0-255 model fed [0,1] values misclassifies."""
    path = make_classifier(tmp_path / "m.onnx", scaling="0-255", class_names=CLASSES)
    spec = read_spec(path, overrides={"scaling": "unit"})
    x, y = brightness_images(4, 32)
    assert (OnnxClassifier(path, spec=spec).predict_proba(x).argmax(1) != y).any()


@pytest.mark.parametrize("output", ["sigmoid_probability", "sigmoid_logit"])
def test_single_sigmoid_unit_is_binary(tmp_path, output):
    path = make_classifier(tmp_path / "s.onnx", output=output, class_names=["normal", "pneumonia"])
    spec = read_spec(path)
    assert spec.output_kind == output
    assert spec.num_classes == 2
    x, _ = brightness_images(3, 32, levels=(0.2, 0.8))
    p = OnnxClassifier(path, spec=spec).predict_proba(x)
    assert p.shape == (6, 2)
    assert (p.argmax(1) == np.array([0, 0, 0, 1, 1, 1])).all()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    ("scaling", "mean", "std"),
    [
        ("unit", (0.0,), (1.0,)),
        ("0-255", (0.0,), (1.0,)),
        ("minus1-1", (0.5,), (0.5,)),
        ("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ("unit", (0.0, 0.1, 0.0), (1.0, 1.0, 2.0)),
        ("0-255", (127.5,), (1.0,)),
    ],
)
def test_encode_input_has_the_bits_of_the_plain_formula(dtype, layout, channels, scaling, mean, std):
    """encode_input skips the operations that change no value and works in one buffer: its tensor must be
    bit-identical to ``(x * factor - mean) / std`` computed the plain way, and the caller's batch unchanged."""
    from auditor.models.inputs import input_scaling
    from auditor.types import ModelSpec

    spec = ModelSpec(channels=channels, layout=layout, dtype=dtype, scaling=scaling, mean=mean, std=std)
    x = np.random.default_rng(0).random((3, 1, 8, 5), dtype=np.float32)
    x[0, 0, 0, :3] = (0.0, 1.0, 1 / 255)
    before = x.copy()
    factor, m, s = input_scaling(spec)
    xc = np.repeat(x, 3, axis=1) if channels == 3 else x
    mean_a = np.asarray(m, np.float32).reshape(1, -1, 1, 1)
    std_a = np.asarray(s, np.float32).reshape(1, -1, 1, 1)
    want = ((xc * factor - mean_a) / std_a).astype(np.float16 if dtype == "float16" else np.float32)
    if layout == "NHWC":
        want = want.transpose(0, 2, 3, 1)
    got = encode_input(x, spec)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == np.ascontiguousarray(want).tobytes()
    np.testing.assert_array_equal(x, before)


def test_uint8_input(tmp_path):
    path = make_classifier(tmp_path / "u.onnx", dtype="uint8", layout="NHWC", class_names=CLASSES)
    spec = read_spec(path)
    assert spec.dtype == "uint8" and spec.scaling == "0-255" and spec.warnings == ()
    x, y = brightness_images(3, 32)
    assert encode_input(x, spec).dtype == np.uint8
    # [0, 1] -> 8-bit levels rounds to the nearest level (not down), clipped to [0, 255]
    levels = np.array([0.0, 1.4, 1.6, 127.5 - 1e-3, 127.5 + 1e-3, 254.6, 255.0, 300.0, -3.0], np.float32) / 255
    enc = encode_input(levels.reshape(1, 1, 1, -1), spec)
    assert enc.shape == (1, 1, levels.size, 3)
    np.testing.assert_array_equal(enc[0, 0, :, 0], [0, 1, 2, 127, 128, 255, 255, 255, 0])
    np.testing.assert_array_equal(enc[..., 0], enc[..., 2])
    assert (OnnxClassifier(path, spec=spec).predict_proba(x).argmax(1) == y).all()


def test_float16_input(tmp_path):
    path = make_classifier(tmp_path / "h.onnx", dtype="float16", class_names=CLASSES)
    spec = read_spec(path)
    assert spec.dtype == "float16"
    x, y = brightness_images(3, 32)
    assert (OnnxClassifier(path, spec=spec).predict_proba(x).argmax(1) == y).all()


def test_fixed_batch_runs_one_by_one(tmp_path):
    path = make_classifier(tmp_path / "f.onnx", fixed_batch=True, class_names=CLASSES)
    spec = read_spec(path)
    assert not spec.dynamic_batch
    x, y = brightness_images(2, 32)
    assert (OnnxClassifier(path, spec=spec).predict_proba(x, batch_size=4).argmax(1) == y).all()


def test_custom_mean_std_from_metadata(tmp_path):
    path = make_classifier(
        tmp_path / "c.onnx", scaling="custom", mean=[0.3], std=[0.2], channels=1, class_names=CLASSES
    )
    spec = read_spec(path)
    assert spec.scaling == "custom" and spec.mean == (0.3,) and spec.std == (0.2,)
    x, y = brightness_images(3, 32)
    assert (OnnxClassifier(path, spec=spec).predict_proba(x).argmax(1) == y).all()


def test_undeclared_scaling_defaults_with_warning(tmp_path):
    path = make_classifier(tmp_path / "d.onnx", declare_scaling=False, class_names=CLASSES)
    spec = read_spec(path)
    assert spec.scaling == "unit"
    assert spec.sources["scaling"] == "default"
    assert any("scaling" in w for w in spec.warnings)


def test_precedence_metadata_sidecar_flags(tmp_path):
    path = make_classifier(tmp_path / "p.onnx", scaling="unit", class_names=CLASSES)
    assert read_spec(path).scaling == "unit"
    (tmp_path / "p.onnx.json").write_text(json.dumps({"scaling": "imagenet", "class_names": ["a", "b", "c"]}))
    spec = read_spec(path)
    assert spec.scaling == "imagenet" and spec.class_names == ("a", "b", "c")
    assert spec.sources["scaling"] == "sidecar"
    spec = read_spec(path, overrides={"scaling": "0-255", "class_names": ["x", "y", "z"]})
    assert spec.scaling == "0-255" and spec.class_names == ("x", "y", "z") and spec.sources["scaling"] == "flag"


def test_our_metadata_key(tmp_path):
    doc = {"scaling": "minus1-1", "class_names": CLASSES, "layout": "NCHW", "channels": 3}
    path = make_classifier(
        tmp_path / "k.onnx", scaling="minus1-1", declare_scaling=False, metadata={"xray_audit.spec": json.dumps(doc)}
    )
    spec = read_spec(path)
    assert spec.scaling == "minus1-1" and spec.class_names == tuple(CLASSES) and spec.sources["scaling"] == "metadata"


def test_default_class_names_warn(tmp_path):
    spec = read_spec(make_classifier(tmp_path / "n.onnx"))
    assert spec.class_names == ("class_0", "class_1", "class_2")
    assert any("class names" in w for w in spec.warnings)


def test_wrong_number_of_labels(tmp_path):
    path = make_classifier(tmp_path / "n.onnx")
    with pytest.raises(ModelContractError, match="2 class names"):
        read_spec(path, overrides={"class_names": ["a", "b"]})


def test_image_size_conflicts_with_fixed_graph(tmp_path):
    path = make_classifier(tmp_path / "n.onnx", size=32)
    with pytest.raises(UsageError, match="conflicts"):
        read_spec(path, overrides={"image_size": 64})


def test_dynamic_size_defaults_to_224(tmp_path):
    spec = read_spec(make_classifier(tmp_path / "n.onnx", size=None))
    assert (spec.height, spec.width) == (224, 224) and spec.sources["height"] == "default"


def _save(graph, path, opset=17):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_several_inputs_rejected(tmp_path):
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3, 8, 8])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])
    path = _save(
        helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g", [a, b], [y]), tmp_path / "two.onnx"
    )
    with pytest.raises(ModelContractError, match="exactly one image input"):
        read_spec(path)


def test_non_image_input_rejected(tmp_path):
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    path = _save(helper.make_graph([helper.make_node("Relu", ["a"], ["y"])], "g", [a], [y]), tmp_path / "vec.onnx")
    with pytest.raises(ModelContractError, match="rank 2"):
        read_spec(path)


def test_wrong_output_rank_rejected(tmp_path):
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])
    path = _save(helper.make_graph([helper.make_node("Relu", ["a"], ["y"])], "g", [a], [y]), tmp_path / "seg.onnx")
    with pytest.raises(ModelContractError, match=r"no output of shape \(N, K\)"):
        read_spec(path)


def test_int_input_rejected(tmp_path):
    a = helper.make_tensor_value_info("a", TensorProto.INT64, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, ["N", 3, 8, 8])
    path = _save(helper.make_graph([helper.make_node("Identity", ["a"], ["y"])], "g", [a], [y]), tmp_path / "int.onnx")
    with pytest.raises(ModelContractError, match="element type"):
        read_spec(path)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty"),
        (b"\x08\x07garbage\xff\xff\xff", "not a readable ONNX"),
        (b"hello world, not onnx at all", "not a readable ONNX|no graph"),
    ],
)
def test_hostile_or_broken_files(tmp_path, content, match):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(ModelContractError, match=match):
        load_onnx_proto(p)


def test_missing_model(tmp_path):
    with pytest.raises(ModelContractError, match="not found"):
        load_onnx_proto(tmp_path / "nope.onnx")


@pytest.mark.parametrize("location", ["/etc/passwd", "../outside.bin", "sub/../../x.bin"])
def test_external_data_paths_are_validated(tmp_path, location):
    path = make_classifier(tmp_path / "e.onnx", class_names=CLASSES)
    model = onnx.load(str(path))
    init = model.graph.initializer[0]
    init.data_location = onnx.TensorProto.EXTERNAL
    entry = init.external_data.add()
    entry.key, entry.value = "location", location
    init.ClearField("raw_data")
    onnx.save(model, str(path))
    with pytest.raises(ModelContractError, match="outside|leaves"):
        load_onnx_proto(path)


def test_decode_output_kinds():
    spec_l = read_spec.__globals__["ModelSpec"](output_kind="logits", class_names=("a", "b"))
    p = decode_output(np.array([[0.0, np.log(3.0)]]), spec_l)
    np.testing.assert_allclose(p, [[0.25, 0.75]])
    spec_s = read_spec.__globals__["ModelSpec"](output_kind="sigmoid_logit", class_names=("a", "b"))
    np.testing.assert_allclose(decode_output(np.array([[0.0]]), spec_s), [[0.5, 0.5]])


def test_image_to_image_model_identity_and_shape_check(tmp_path):
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, "H", "W"])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 1, "H", "W"])
    path = _save(
        helper.make_graph([helper.make_node("Identity", ["image"], ["out"])], "id", [x], [y]), tmp_path / "id.onnx"
    )
    imgs, _ = brightness_images(2, 16)
    np.testing.assert_array_equal(OnnxImageModel(path)(imgs), imgs)
    y2 = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 1, 8, 8])
    x2 = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 16, 16])
    path2 = _save(
        helper.make_graph(
            [helper.make_node("MaxPool", ["image"], ["out"], kernel_shape=[2, 2], strides=[2, 2])], "pool", [x2], [y2]
        ),
        tmp_path / "pool.onnx",
    )
    with pytest.raises(ModelContractError, match="differs"):
        OnnxImageModel(path2)


def test_contract_contradictions_are_refused(tmp_path):
    """A uint8 input with another scaling, more (or fewer) class names than outputs, a sigmoid kind
    on a K-way output: each is a one-line contract error, not a silently wrong encoding."""
    u8 = make_classifier(tmp_path / "u8.onnx", dtype="uint8", layout="NHWC", class_names=CLASSES)
    with pytest.raises(ModelContractError, match="uint8 input takes 0-255"):
        read_spec(u8, overrides={"scaling": "imagenet"})
    three = make_classifier(tmp_path / "k3.onnx", class_names=CLASSES)
    for names in (CLASSES + ["extra"], CLASSES[:2]):
        with pytest.raises(ModelContractError, match="class names"):
            read_spec(three, overrides={"class_names": tuple(names)})
    with pytest.raises(ModelContractError, match=r"needs a \(N, 1\) output"):
        read_spec(three, overrides={"output_kind": "sigmoid_logit", "class_names": ("normal", "pneumonia")})


def test_single_sigmoid_unit_without_names_is_negative_positive(tmp_path):
    spec = read_spec(make_classifier(tmp_path / "s.onnx", output="sigmoid_logit"))
    assert spec.class_names == ("negative", "positive") and spec.num_classes == 2


def _dynamic_k(tmp_path, class_names=None):
    """The brightness classifier with its class axis declared dynamic (``(N, K)``); it outputs 3 scores."""
    model = onnx.load(make_classifier(tmp_path / "m.onnx", class_names=class_names))
    dim = model.graph.output[0].type.tensor_type.shape.dim[1]
    dim.ClearField("dim_value")
    dim.dim_param = "K"
    path = tmp_path / "k.onnx"
    onnx.save(model, path)
    return path


def test_dynamic_number_of_classes_takes_the_names_given(tmp_path):
    """A model whose class axis is dynamic is read with the class names it declares (or --labels): K is their
    number (it used to be refused as "3 class names for a model with None classes"); without names it is a
    contract error, and outputs of another width than the names are refused when decoded."""
    path = _dynamic_k(tmp_path, CLASSES)
    spec = read_spec(path)
    assert spec.class_names == tuple(CLASSES) and spec.num_classes == 3
    x, y = brightness_images(4, 32)
    assert (OnnxClassifier(path, spec=spec).predict_proba(x).argmax(1) == y).all()
    two = read_spec(path, overrides={"class_names": ("normal", "pneumonia")})
    with pytest.raises(ModelContractError, match="3 class scores per image for 2 class names"):
        OnnxClassifier(path, spec=two).predict_proba(x)
    with pytest.raises(ModelContractError, match="number of classes is dynamic"):
        read_spec(_dynamic_k(tmp_path))
