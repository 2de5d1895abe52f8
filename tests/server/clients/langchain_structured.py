"""Run by tests/server/test_third_party_clients.py in .venv-clients: langchain-openai's structured output
(the json_schema method, OpenAI's strict response_format) against `atom serve`. Prints the result as JSON."""

import json
import sys
from typing import Literal

from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field


class City(BaseModel):
    name: str = Field(max_length=20)
    country: str = Field(max_length=20)
    size: Literal["small", "medium", "large"]


url, key, model = sys.argv[1:4]
llm = ChatOpenAI(base_url=f"{url}/v1", api_key=key, model=model, temperature=0, max_tokens=80, max_retries=0)
structured = llm.with_structured_output(City, method="json_schema", strict=True)
answers = structured.batch(["Tell me about Paris.", "Tell me about a small town."])
print(json.dumps([a.model_dump() for a in answers]))
