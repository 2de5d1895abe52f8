"""Run by tests/server/test_third_party_clients.py in .venv-clients: langchain-openai's tool calling
(bind_tools with a pydantic tool, tool_choice "any" = required and a named tool; invoke and stream)
against `atom serve`. Prints each call's name and arguments as JSON."""

import json
import sys

from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field


class GetWeather(BaseModel):
    """The current weather in a city"""

    city: str = Field(max_length=20)
    unit: str = Field(pattern="^(celsius|fahrenheit)$")


url, key, model = sys.argv[1:4]
llm = ChatOpenAI(base_url=f"{url}/v1", api_key=key, model=model, temperature=0, max_tokens=60, max_retries=0)
question = "What is the weather in Paris?"
calls = {}
for choice in ("any", "GetWeather"):
    message = llm.bind_tools([GetWeather], tool_choice=choice).invoke(question)
    calls[choice] = message.tool_calls
streamed = None
for chunk in llm.bind_tools([GetWeather], tool_choice="GetWeather").stream(question):
    streamed = chunk if streamed is None else streamed + chunk
calls["stream"] = streamed.tool_calls
print(
    json.dumps(
        {k: [{"name": c["name"], "args": c["args"], "id": c["id"]} for c in v] for k, v in calls.items()}
    )
)
