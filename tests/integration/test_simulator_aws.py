"""The simulator's Bedrock Runtime over real sockets, driven by `boto3`
(InvokeModel, its response stream, Converse, ConverseStream, CountTokens) and
`anthropic.AnthropicBedrock`; faults as botocore's and the SDK's errors."""

from __future__ import annotations

import json

import anthropic
import boto3
import botocore.exceptions
import pytest
import urllib3.exceptions
from botocore.config import Config

from aperture.sim import expected_usage
from aperture.sim.common import answer_text, answer_words, tool_call_tokens

from .conftest import SimHandle, keep, serve_simulator

MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-v1:0"
USER = [{"role": "user", "content": "How many X-91 are left?"}]
INVOKE = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 256, "messages": USER}
TOOL = {"name": "check_stock", "description": "Stock level for a SKU",
        "input_schema": {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}}
SPEC = {"toolSpec": {"name": "check_stock", "description": "Stock level for a SKU",
                     "inputSchema": {"json": TOOL["input_schema"]}}}
CONVERSE_USER = [{"role": "user", "content": [{"text": "How many X-91 are left?"}]}]


@pytest.fixture(scope="module")
def sim(loop_thread):
    with serve_simulator(loop_thread) as sim:
        yield sim


def runtime(sim: SimHandle, key: str = "AKIDTEST", read_timeout: float = 10.0):
    return boto3.client("bedrock-runtime", endpoint_url=sim.url, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key="x",
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout))


@pytest.fixture(scope="module")
def br(sim):
    client = runtime(sim)
    yield client
    client.close()




def claude(sim: SimHandle, **kw) -> anthropic.AnthropicBedrock:
    kw.setdefault("timeout", 10.0)
    if "api_key" not in kw:
        kw.update(aws_access_key="AKIDTEST", aws_secret_key="x")
    return keep(anthropic.AnthropicBedrock(base_url=sim.url, aws_region="us-east-1", max_retries=0, **kw))


def inner_events(stream) -> list[dict]:
    return [json.loads(event["chunk"]["bytes"]) for event in stream]


# -- InvokeModel -------------------------------------------------------------------------


def test_invoke_model(br, sim):
    response = br.invoke_model(modelId=PROFILE_ARN, body=json.dumps(INVOKE))
    message = json.loads(response["body"].read())
    assert message["content"] == [{"type": "text", "text": answer_text(12)}]
    assert message["model"] == PROFILE_ARN  # the id arrives percent-encoded and is decoded
    assert "%2F" in sim.sim.seen[-1].path and sim.sim.seen[-1].headers["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    usage = expected_usage("bedrock_invoke", INVOKE)
    assert message["usage"] == usage
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-input-token-count"] == str(usage["input_tokens"])
    assert headers["x-amzn-bedrock-output-token-count"] == "12"
    assert response["contentType"] == "application/json"


def test_invoke_model_with_response_stream(br):
    body = dict(INVOKE, system=[{"type": "text", "text": "Cached instructions.",
                                 "cache_control": {"type": "ephemeral"}}])
    response = br.invoke_model_with_response_stream(modelId=MODEL, body=json.dumps(body))
    assert response["contentType"] == "application/json"
    events = inner_events(response["body"])
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"] and "ping" not in kinds
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == answer_text(12)
    usage = expected_usage("bedrock_invoke", body)
    assert usage["cache_read_input_tokens"] > 0
    final = events[-2]["usage"]
    assert {k: final[k] for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                                  "output_tokens")} == {
        k: usage[k] for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                              "output_tokens")}
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    assert (metrics["inputTokenCount"], metrics["outputTokenCount"]) == (usage["input_tokens"], 12)
    assert metrics["cacheReadInputTokenCount"] == usage["cache_read_input_tokens"]


# -- Converse -------------------------------------------------------------------------------


def test_converse(br):
    request = {"messages": CONVERSE_USER, "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
               "inferenceConfig": {"maxTokens": 5}}
    response = br.converse(modelId=MODEL, **request)
    assert response["output"]["message"]["content"] == [{"text": answer_text(5)}]
    assert response["stopReason"] == "max_tokens"
    assert response["usage"] == expected_usage("bedrock_converse", request)
    assert response["usage"]["cacheReadInputTokens"] > 0 and "latencyMs" in response["metrics"]


def test_converse_tool_use(br):
    request = {"messages": [{"role": "user", "content": [{"text": "Use the tool for X-91."}]}],
               "toolConfig": {"tools": [SPEC]}}
    response = br.converse(modelId=MODEL, **request)
    use = response["output"]["message"]["content"][0]["toolUse"]
    assert (use["name"], use["input"]) == ("check_stock", {"sku": "x"}) and use["toolUseId"].startswith("tooluse_")
    assert response["stopReason"] == "tool_use"
    assert response["usage"] == expected_usage("bedrock_converse", request)
    assert response["usage"]["outputTokens"] == tool_call_tokens({"sku": "x"})

    streamed = list(br.converse_stream(modelId=MODEL, **request)["stream"])
    kinds = [next(iter(e)) for e in streamed]
    assert kinds[:2] == ["messageStart", "contentBlockStart"]
    start = streamed[1]["contentBlockStart"]["start"]["toolUse"]
    assert start["name"] == "check_stock" and start["toolUseId"].startswith("tooluse_")
    arguments = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in streamed
                        if "contentBlockDelta" in e)
    assert json.loads(arguments) == {"sku": "x"}
    assert streamed[-2]["messageStop"]["stopReason"] == "tool_use"


def test_converse_stream(br):
    request = {"messages": CONVERSE_USER}
    events = list(br.converse_stream(modelId=MODEL, **request)["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds == ["messageStart"] + ["contentBlockDelta"] * 12 + ["contentBlockStop", "messageStop", "metadata"]
    assert [e["contentBlockDelta"]["delta"]["text"] for e in events[1:13]] == answer_words(12)
    assert events[-1]["metadata"]["usage"] == expected_usage("bedrock_converse", request)


def test_count_tokens(br):
    counted = br.count_tokens(modelId=MODEL, input={"converse": {"messages": CONVERSE_USER}})
    assert counted["inputTokens"] == expected_usage("bedrock_converse", {"messages": CONVERSE_USER})["inputTokens"]
    counted = br.count_tokens(modelId=MODEL, input={"invokeModel": {"body": json.dumps(INVOKE)}})
    assert counted["inputTokens"] == expected_usage("bedrock_invoke", INVOKE)["input_tokens"]


# -- AnthropicBedrock -----------------------------------------------------------------------


def test_anthropic_bedrock_create_and_stream(sim):
    client = claude(sim)
    message = client.messages.create(model=MODEL, max_tokens=256, messages=USER,
                                     extra_headers={"anthropic-beta": "beta-one,beta-two"})
    seen = sim.sim.seen[-1]
    assert seen.path == "/model/%s/invoke" % MODEL
    body = json.loads(seen.body)
    assert "model" not in body and "stream" not in body and body["anthropic_beta"] == ["beta-one", "beta-two"]
    assert message.content[0].text == answer_text(12)
    assert message.usage.input_tokens == expected_usage("bedrock_invoke", body)["input_tokens"]
    with client.messages.stream(model=MODEL, max_tokens=256, messages=[
            {"role": "user", "content": "Use the tool for X-91."}], tools=[TOOL]) as stream:
        final = stream.get_final_message()
    assert sim.sim.seen[-1].path.endswith("/invoke-with-response-stream")
    block = final.content[0]
    assert (block.type, block.name, block.input) == ("tool_use", "check_stock", {"sku": "x"})
    assert final.usage.output_tokens == expected_usage("bedrock_invoke", json.loads(sim.sim.seen[-1].body))[
        "output_tokens"]


def test_anthropic_bedrock_with_an_api_key(sim):
    client = claude(sim, api_key="bedrock-api-key")
    with client.messages.stream(model=MODEL, max_tokens=3, messages=USER) as stream:
        assert list(stream.text_stream) == answer_words(3)
    assert sim.sim.seen[-1].headers["authorization"] == "Bearer bedrock-api-key"


# -- faults and credentials ---------------------------------------------------------------------


@pytest.mark.parametrize("fault, name, status", [
    ("429", "ThrottlingException", 429), ("500", "InternalServerException", 500),
    ("529", "ServiceUnavailableException", 503), ("403", "AccessDeniedException", 403),
    ("424", "ModelErrorException", 424),
])
def test_status_faults(br, sim, fault, name, status):
    with pytest.raises(botocore.exceptions.ClientError) as err:
        br.converse(modelId=MODEL + "-sim-error-" + fault, messages=CONVERSE_USER)
    assert err.value.response["Error"]["Code"] == name
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    with pytest.raises(anthropic.APIStatusError) as aerr:
        claude(sim).messages.create(model=MODEL, max_tokens=8, messages=USER, extra_headers={"x-sim-error": fault})
    assert aerr.value.status_code == status and set(aerr.value.body) == {"message"}


def test_validation_errors(br):
    with pytest.raises(br.exceptions.ValidationException, match="extraneous key \\[model\\]"):
        br.invoke_model(modelId=MODEL, body=json.dumps({**INVOKE, "model": MODEL}))
    with pytest.raises(br.exceptions.ValidationException, match="anthropic_version"):
        br.invoke_model(modelId=MODEL, body=json.dumps({"max_tokens": 8, "messages": USER}))


def test_error_event_is_a_stream_exception(br, sim):
    stream = br.converse_stream(modelId=MODEL + "-sim-error-error-event", messages=CONVERSE_USER)["stream"]
    with pytest.raises(botocore.exceptions.EventStreamError) as err:
        list(stream)
    stream.close()  # botocore leaves the connection to whoever holds the stream
    assert err.value.response["Error"]["Code"] == "modelStreamErrorException"
    seen = []
    stream = br.invoke_model_with_response_stream(modelId=MODEL + "-sim-error-error-event",
                                                  body=json.dumps(INVOKE))["body"]
    with pytest.raises(botocore.exceptions.EventStreamError):
        for event in stream:
            seen.append(json.loads(event["chunk"]["bytes"])["type"])
    stream.close()
    assert seen[:2] == ["message_start", "content_block_start"] and "message_stop" not in seen
    with pytest.raises(anthropic.APIStatusError) as aerr:
        with claude(sim).messages.stream(model=MODEL, max_tokens=8, messages=USER,
                                         extra_headers={"x-sim-error": "error-event"}) as stream:
            stream.get_final_message()
    assert aerr.value.body["error"]["type"] == "modelStreamErrorException"


def test_cut_and_stall(br, sim):
    stream = br.converse_stream(modelId=MODEL + "-sim-error-cut", messages=CONVERSE_USER)["stream"]
    with pytest.raises(urllib3.exceptions.ProtocolError, match="ended prematurely"):
        list(stream)
    stream.close()
    with pytest.raises(anthropic.APIConnectionError):
        with claude(sim).messages.stream(model=MODEL + "-sim-error-cut", max_tokens=8, messages=USER) as s:
            s.get_final_message()
    slow = runtime(sim, read_timeout=0.5)
    try:
        stream = slow.converse_stream(modelId=MODEL + "-sim-error-stall", messages=CONVERSE_USER)["stream"]
        with pytest.raises(urllib3.exceptions.ReadTimeoutError):
            list(stream)
        stream.close()
    finally:
        slow.close()


def test_require_key_reads_the_sigv4_access_key_id(loop_thread):
    with serve_simulator(loop_thread, require_key="AKIDRIGHT") as handle:
        right = keep(runtime(handle, key="AKIDRIGHT"))
        wrong = keep(runtime(handle, key="AKIDWRONG"))
        assert right.converse(modelId=MODEL, messages=CONVERSE_USER)["usage"]["outputTokens"] == 12
        with pytest.raises(botocore.exceptions.ClientError) as err:
            wrong.converse(modelId=MODEL, messages=CONVERSE_USER)
        assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
