"""Run by tests/server/test_third_party_clients.py in .venv-clients: langchain-openai's ChatOpenAI against
`atom serve`: invoke, stream, batch, async. Prints what it got as JSON."""

import asyncio
import json
import sys

from langchain_openai import ChatOpenAI

url, key, model = sys.argv[1:4]
llm = ChatOpenAI(base_url=f"{url}/v1", api_key=key, model=model, temperature=0, max_tokens=8, max_retries=0)
invoked = llm.invoke("What is the capital of France?")
streamed = list(llm.stream("Count to five."))
batch = llm.batch(["Hi", "Hello", "Hey"])


async def async_calls():  # one event loop: the client's async HTTP pool belongs to it
    invoked = await llm.ainvoke("Say hi")
    return invoked, [chunk.content async for chunk in llm.astream("Say hello")]


async_invoked, async_streamed = asyncio.run(async_calls())


print(
    json.dumps(
        {
            "invoke": invoked.content,
            "invoke_usage": invoked.usage_metadata,
            "invoke_fingerprint": invoked.response_metadata.get("system_fingerprint"),
            "stream": [c.content for c in streamed],
            "batch": [m.content for m in batch],
            "ainvoke": async_invoked.content,
            "astream": async_streamed,
        }
    )
)
