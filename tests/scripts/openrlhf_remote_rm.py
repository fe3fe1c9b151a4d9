"""OpenRLHF's own remote-RM client against a reward server (tests/test_service_clients.py starts it with the main
environment's interpreter, which holds ``openrlhf``: env/nodeps-main.txt).

    python openrlhf_remote_rm.py URL REQUESTS.json  ->  JSON list, one {"rewards_info", "error"} per sample

Each sample is fetched as OpenRLHF 0.11's rollout does it (``SingleTurnAgentExecutor.execute`` calls
``_fetch_rewards_via_http([query], [prompt], [label])`` once per sample), all samples concurrently.
"""

import asyncio
import json
import sys

from openrlhf.utils.agent import SingleTurnAgentExecutor


async def fetch_all(url: str, samples: list[dict]) -> list[dict]:
    executor = SingleTurnAgentExecutor(remote_rm_url=url)

    async def one(sample: dict) -> dict:
        try:
            info = await executor._fetch_rewards_via_http([sample["query"]], [sample["prompt"]], [sample["label"]])
            return {"rewards_info": info[0], "error": None}
        except Exception as exc:  # what execute() catches: the sample's reward stays None
            return {"rewards_info": None, "error": f"{type(exc).__name__}: {exc}"}

    return await asyncio.gather(*[one(s) for s in samples])


if __name__ == "__main__":
    url, requests_file = sys.argv[1], sys.argv[2]
    with open(requests_file) as handle:
        print(json.dumps(asyncio.run(fetch_all(url, json.load(handle)))))
