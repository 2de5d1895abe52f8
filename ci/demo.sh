#!/usr/bin/env bash
# The README's demo: base image, wheel bundle, clean CPU image, serve SmolLM2 from it, ask one question.
set -euo pipefail
cd "$(dirname "$0")/.."
ca=(); [ -f /etc/ssl/certs/ca-certificates.crt ] && ca=(--ca-cert /etc/ssl/certs/ca-certificates.crt)
links=(); [ -d /opt/wheels ] && links=(--find-links /opt/wheels)
docker_cli=$(command -v /usr/bin/docker || command -v docker)
"$docker_cli" image inspect atom-base:bookworm >/dev/null 2>&1 || atom-build base bootstrap --docker "$docker_cli"
atom-build image --recipe cpu "${links[@]}" "${ca[@]}"
model=$(atom-build demo-model)
docker_name=atom-demo
"$docker_cli" rm -f "$docker_name" >/dev/null 2>&1 || true
url=$(atom-build serve --image atom:cpu --model "$model" --port 8000 --name "$docker_name")
python3 - "$url" <<'PY'
import sys
from openai import OpenAI
client = OpenAI(base_url=f"{sys.argv[1]}/v1", api_key="unused")
r = client.chat.completions.create(model="smollm2-135m", temperature=0, max_tokens=32,
                                   messages=[{"role": "user", "content": "What is the capital of France?"}])
print("model says:", r.choices[0].message.content)
PY
echo "serving at $url (stop with: docker rm -f $docker_name)"
