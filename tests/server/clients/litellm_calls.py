"""Run by tests/server/test_third_party_clients.py in .venv-clients: litellm against `atom serve` as an
OpenAI-compatible provider: sync, stream, async. Prints what it got as JSON."""

import asyncio
import json
import sys

import litellm

url, key, model = sys.argv[1:4]
args = {
    "model": f"openai/{model}",
    "api_base": f"{url}/v1",
    "api_key": key,
    "max_tokens": 8,
    "temperature": 0,
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
}
sync = litellm.completion(**args)
stream = [chunk.choices[0].delta.content or "" for chunk in litellm.completion(**args, stream=True)]


async def async_calls():
    reply = await litellm.acompletion(**args)
    stream = await litellm.acompletion(**args, stream=True)
    return reply, [chunk.choices[0].delta.content or "" async for chunk in stream]


async_reply, async_streamed = asyncio.run(async_calls())


print(
    json.dumps(
        {
            "sync": sync.choices[0].message.content,
            "sync_usage": sync.usage.completion_tokens,
            "stream": stream,
            "async": async_reply.choices[0].message.content,
            "astream": async_streamed,
        }
    )
)
