"""Open Inference Protocol v2 with the official tritonclient.http client and plain JSON."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from cxr.imaging import PreprocessParams, preprocess_bytes
from tests.support.images import dicom, encode, xray_array
from tests.support.models import SIZE, direct_ort


def client_for(server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=server.url.removeprefix("http://"))


def test_health_and_metadata(server) -> None:
    client = client_for(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("cxr-age-sex")
    meta = client.get_model_metadata("cxr-age-sex")
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert inputs["image"] == {"name": "image", "datatype": "FP32", "shape": [-1, SIZE, SIZE, 1]}
    assert inputs["image_bytes"]["datatype"] == "BYTES"
    assert {o["name"] for o in meta["outputs"]} == {"age", "p_male"}
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    with pytest.raises(InferenceServerException, match="not served here"):
        client.get_model_metadata("other-model")


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_tensor_input(server, model_dir, binary) -> None:
    files = [encode(xray_array(seed=s)) for s in (1, 2, 3)]
    batch = np.stack([preprocess_bytes(f, PreprocessParams(size=SIZE)) for f in files])
    image = triton.InferInput("image", list(batch.shape), "FP32")
    image.set_data_from_numpy(batch, binary_data=binary)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("age", "p_male")]
    result = client_for(server).infer("cxr-age-sex", [image], outputs=outputs)
    age = result.as_numpy("age")
    assert age.shape == (3, 1)
    for i, f in enumerate(files):
        assert age[i, 0] == pytest.approx(direct_ort(model_dir, f)[0], abs=1e-4)
        assert result.as_numpy("p_male")[i, 0] == pytest.approx(
            direct_ort(model_dir, f)[1], abs=1e-6
        )


def test_tritonclient_uint8_tensor_default_outputs(server) -> None:
    batch = np.stack([preprocess_bytes(encode(xray_array(seed=4)), PreprocessParams(size=SIZE))])
    as_u8 = batch.astype(np.uint8)  # grey levels are whole numbers, so nothing is lost
    image = triton.InferInput("image", list(as_u8.shape), "UINT8")
    image.set_data_from_numpy(as_u8)
    result = client_for(server).infer("cxr-age-sex", [image])  # no outputs listed: all, binary
    fp = triton.InferInput("image", list(batch.shape), "FP32")
    fp.set_data_from_numpy(batch)
    expected = client_for(server).infer("cxr-age-sex", [fp])
    assert result.as_numpy("age")[0, 0] == expected.as_numpy("age")[0, 0]


def test_tritonclient_bytes_input_encoded_files(server, model_dir) -> None:
    files = [
        encode(xray_array(seed=5)),
        encode(xray_array(seed=6), "JPEG"),
        dicom(xray_array(seed=7).astype(np.uint16) * 16),
    ]
    data = np.array(files, dtype=np.object_)
    item = triton.InferInput("image_bytes", [len(files)], "BYTES")
    item.set_data_from_numpy(data)
    result = client_for(server).infer("cxr-age-sex", [item])
    age = result.as_numpy("age")
    for i, f in enumerate(files):
        assert age[i, 0] == pytest.approx(direct_ort(model_dir, f)[0], abs=1e-4)


def test_wrong_shape_and_dtype_named(server) -> None:
    client = client_for(server)
    bad = triton.InferInput("image", [1, 32, 32, 1], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 32, 32, 1), np.float32))
    with pytest.raises(InferenceServerException, match=r"expected \[-1, 64, 64, 1\]") as info:
        client.infer("cxr-age-sex", [bad])
    assert info.value.status() == "400"
    wrong = triton.InferInput("image", [1, SIZE, SIZE, 1], "INT32")
    wrong.set_data_from_numpy(np.zeros((1, SIZE, SIZE, 1), np.int32))
    with pytest.raises(InferenceServerException, match="INT32 is not supported"):
        client.infer("cxr-age-sex", [wrong])


def test_bytes_input_bad_file_names_the_item(server) -> None:
    item = triton.InferInput("image_bytes", [2], "BYTES")
    item.set_data_from_numpy(np.array([encode(xray_array()), b"%PDF-1.4"], dtype=np.object_))
    with pytest.raises(
        InferenceServerException, match=r"image_bytes\[1\]: not a supported image"
    ) as e:
        client_for(server).infer("cxr-age-sex", [item])
    assert e.value.status() == "415"


def test_plain_json_requests(server, model_dir) -> None:
    f = encode(xray_array(seed=8))
    url = f"{server.url}/v2/models/cxr-age-sex/infer"
    body = {
        "id": "r1",
        "inputs": [
            {
                "name": "image_bytes",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(f).decode()],
            }
        ],
    }
    r = httpx.post(url, json=body)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert r.json()["id"] == "r1" and out["age"]["shape"] == [1, 1]
    assert out["age"]["data"][0] == pytest.approx(direct_ort(model_dir, f)[0], abs=1e-4)
    x = preprocess_bytes(f, PreprocessParams(size=SIZE))
    r = httpx.post(
        url,
        json={
            "inputs": [
                {
                    "name": "image",
                    "shape": [1, SIZE, SIZE, 1],
                    "datatype": "FP32",
                    "data": x.reshape(-1).tolist(),
                }
            ],
            "outputs": [{"name": "p_male"}],
        },
    )
    assert [o["name"] for o in r.json()["outputs"]] == ["p_male"]
    assert r.json()["outputs"][0]["data"][0] == pytest.approx(direct_ort(model_dir, f)[1], abs=1e-6)


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"inputs": []}, "non-empty 'inputs'"),
        (
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1, SIZE, SIZE, 1],
                        "datatype": "FP32",
                        "data": [0.0] * 10,
                    }
                ]
            },
            "needs 4096",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1, SIZE, SIZE, 1],
                        "datatype": "UINT8",
                        "data": [300] * SIZE * SIZE,
                    }
                ]
            },
            "not UINT8",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1, SIZE, SIZE, 1],
                        "datatype": "FP32",
                        "data": ["NaN"] * SIZE * SIZE,
                    }
                ]
            },
            "NaN",
        ),
        (
            {"inputs": [{"name": "pixels", "shape": [1], "datatype": "FP32", "data": [1]}]},
            "unknown input",
        ),
        (
            {
                "inputs": [
                    {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}
                ]
            },
            "base64",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "image_bytes",
                        "shape": [1],
                        "datatype": "BYTES",
                        "data": [base64.b64encode(b"x").decode()],
                    }
                ],
                "outputs": [{"name": "gender"}],
            },
            "not a supported image",
        ),
    ],
)
def test_bad_json_requests_are_400(server, body, needle) -> None:
    _assert_4xx(server, body, needle)


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"inputs": "image"}, "non-empty 'inputs'"),
        ([1, 2], "non-empty 'inputs'"),
        ({"inputs": [7]}, "must be an object"),
        ({"inputs": [{"name": "image", "shape": "1,64", "datatype": "FP32", "data": []}]}, "shape"),
        (
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1],
                        "datatype": "FP32",
                        "data": [1],
                        "parameters": ["x"],
                    }
                ]
            },
            "'parameters' must be an object",
        ),
        (
            {
                "inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [1]}],
                "parameters": 3,
            },
            "'parameters' must be an object",
        ),
        (
            {
                "inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [1]}],
                "outputs": [{"name": "age", "parameters": "binary"}],
            },
            "'parameters' must be an object",
        ),
        (
            {
                "inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [1]}],
                "outputs": [{"nom": "age"}],
            },
            "string 'name'",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1, SIZE, SIZE, 1],
                        "datatype": "FP32",
                        "data": {"a": 1},
                    }
                ]
            },
            "not FP32",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [2**40, SIZE, SIZE, 1],
                        "datatype": "FP32",
                        "data": [1.0],
                    }
                ]
            },
            "values; shape",
        ),
        (
            {
                "inputs": [
                    {"name": "image", "shape": [2**62, 2**62, 4], "datatype": "FP32", "data": []}
                ]
            },
            "values; shape",
        ),
        (
            {
                "inputs": [
                    {"name": "image", "shape": [0, SIZE, SIZE, 1], "datatype": "FP32", "data": []}
                ]
            },
            "N ≥ 1",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1, SIZE, SIZE, 1],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": 10**9},
                    }
                ]
            },
            "exceeds the body",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "image_bytes",
                        "shape": [1],
                        "datatype": "BYTES",
                        "data": [[1, 2], [3]],
                    }
                ]
            },
            "base64 string",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1, SIZE, SIZE, 1],
                        "datatype": "FP32",
                        "data": [0.0] * SIZE * SIZE,
                    }
                ],
                "outputs": [{"name": "gender"}],
            },
            "unknown outputs ['gender']",
        ),
    ],
)
def test_hostile_json_requests_are_4xx(server, body, needle) -> None:
    _assert_4xx(server, body, needle)


def _assert_4xx(server, body, needle) -> None:
    r = httpx.post(f"{server.url}/v2/models/cxr-age-sex/infer", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert needle in r.json()["error"] and r.json()["detail"] == r.json()["error"]


def test_not_json_is_400(server) -> None:
    r = httpx.post(f"{server.url}/v2/models/cxr-age-sex/infer", content=b"\x89PNG garbage")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
