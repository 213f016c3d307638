"""The Open Inference Protocol's REST description, specialised to one served model.

Written after KServe's open_inference_rest.yaml (the protocol's own OpenAPI document): the
same paths and schemas, with {model_name} and {model_version} fixed to the served model,
its inputs' names and datatypes as enums, and the tensor data of an answer as numbers,
strings or booleans only (the protocol's tensor_data has no null, so a NaN sent as null
is a schema violation). Inference answers may be binary tensor data (the extension) and
then come as application/octet-stream.
"""

from __future__ import annotations

from typing import Any

from modeldeploy_serving.model import Model

FP_LIMITS = {"FP16": 65504.0, "FP32": 3.4028234663852886e38, "FP64": 1.7976931348623157e308}
ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/inference_error_response"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": ERROR}


def _json(ref: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _input_schema(name: str, datatype: str, rank: int) -> dict[str, Any]:
    if datatype in FP_LIMITS:
        limit = FP_LIMITS[datatype]
        scalar: dict[str, Any] = {"type": "number", "minimum": -limit, "maximum": limit, "nullable": True}
    elif datatype == "BOOL":
        scalar = {"type": "boolean"}
    elif datatype == "BYTES":
        scalar = {"type": "string"}
    else:
        scalar = {"type": "integer"}
    return {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string", "enum": [name]},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": rank, "maxItems": rank},
            "datatype": {"type": "string", "enum": [datatype]},
            "parameters": {"$ref": "#/components/schemas/parameters"},
            "data": {"type": "array", "items": scalar},
        },
    }


def oip_openapi(model: Model) -> dict[str, Any]:
    """The protocol's OpenAPI 3.0 document for the model this server serves."""
    base = f"/v2/models/{model.name}"
    versioned = f"{base}/versions/{model.version}"
    model_paths: dict[str, Any] = {}
    for prefix in (base, versioned):
        model_paths[prefix] = {"get": {"responses": {"200": _json("#/components/schemas/metadata_model_response")}}}
        model_paths[f"{prefix}/ready"] = {
            "get": {"responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}
        }
        model_paths[f"{prefix}/infer"] = {
            "post": {
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/inference_request"}}},
                },
                "responses": {
                    "200": {
                        "description": "the model's answer",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/inference_response"}},
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    "400": _error("the request does not fit the model"),
                    "413": _error("the body is over the size limit"),
                    "415": _error("an unsupported Content-Encoding"),
                    "422": _error("the model cannot answer these values"),
                },
            }
        }
    output_names = [spec.name for spec in model.outputs]
    return {
        "openapi": "3.0.3",
        "info": {"title": f"Open Inference Protocol: {model.name}", "version": "2.0"},
        "paths": {
            "/v2/health/live": {"get": {"responses": {"200": {"description": "live"}}}},
            "/v2/health/ready": {
                "get": {"responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}
            },
            "/v2": {"get": {"responses": {"200": _json("#/components/schemas/metadata_server_response")}}},
            "/v2/": {"get": {"responses": {"200": _json("#/components/schemas/metadata_server_response")}}},
            **model_paths,
        },
        "components": {
            "schemas": {
                "parameters": {"type": "object", "additionalProperties": {}},
                "metadata_server_response": {
                    "type": "object",
                    "required": ["name", "version", "extensions"],
                    "properties": {
                        "name": {"type": "string"},
                        "version": {"type": "string"},
                        "extensions": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "metadata_tensor": {
                    "type": "object",
                    "required": ["name", "datatype", "shape"],
                    "properties": {
                        "name": {"type": "string"},
                        "datatype": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer"}},
                    },
                },
                "metadata_model_response": {
                    "type": "object",
                    "required": ["name", "platform"],
                    "properties": {
                        "name": {"type": "string"},
                        "versions": {"type": "array", "items": {"type": "string"}},
                        "platform": {"type": "string"},
                        "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/metadata_tensor"}},
                        "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/metadata_tensor"}},
                    },
                },
                "inference_request": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"$ref": "#/components/schemas/parameters"},
                        "inputs": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "oneOf": [
                                    _input_schema(spec.name, spec.datatype, len(spec.shape)) for spec in model.inputs
                                ]
                            },
                        },
                        "outputs": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string", "enum": output_names},
                                    "parameters": {"$ref": "#/components/schemas/parameters"},
                                },
                            },
                        },
                    },
                },
                "inference_response": {
                    "type": "object",
                    "required": ["model_name", "outputs"],
                    "properties": {
                        "model_name": {"type": "string", "enum": [model.name]},
                        "model_version": {"type": "string", "enum": [model.version]},
                        "id": {"type": "string"},
                        "parameters": {"$ref": "#/components/schemas/parameters"},
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "datatype", "data"],
                                "properties": {
                                    "name": {"type": "string", "enum": output_names},
                                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                                    "datatype": {"type": "string"},
                                    "parameters": {"$ref": "#/components/schemas/parameters"},
                                    "data": {"$ref": "#/components/schemas/tensor_data"},
                                },
                            },
                        },
                    },
                },
                "tensor_data": {
                    "type": "array",
                    "items": {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]},
                },
                "inference_error_response": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
            }
        },
    }
