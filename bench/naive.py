"""The script a user would otherwise write: a semaphore, a fixed sleep on 429, a fixed poll
interval, whole-file downloads. The baseline bench/run.py measures the engine against.

    python bench/naive.py MANIFEST OUT   (KIE_API_KEY and KIE_BASE_URL from the environment)
"""

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import yaml

CONCURRENT_CREATES = 10
SLEEP_ON_429 = 2.0
POLL_EVERY = 2.5


async def main(manifest: str, out: str) -> None:
    items = yaml.safe_load(Path(manifest).read_text())["items"]
    base, key = os.environ["KIE_BASE_URL"], os.environ["KIE_API_KEY"]
    auth = {"Authorization": f"Bearer {key}"}
    Path(out).mkdir(parents=True, exist_ok=True)
    gate = asyncio.Semaphore(CONCURRENT_CREATES)
    async with aiohttp.ClientSession() as http:
        async def one(item: dict) -> None:
            body = {"model": "hailuo/02-image-to-video-pro",
                    "input": {"prompt": item["prompt"], "image_url": item["image_url"]}}
            async with gate:
                while True:
                    async with http.post(f"{base}/api/v1/jobs/createTask", json=body, headers=auth) as r:
                        answer = await r.json(content_type=None)
                    if r.status == 429 or answer.get("code") == 429:
                        await asyncio.sleep(SLEEP_ON_429)
                        continue
                    task = answer["data"]["taskId"]
                    break
            while True:
                await asyncio.sleep(POLL_EVERY)
                async with http.get(f"{base}/api/v1/jobs/recordInfo", params={"taskId": task},
                                    headers=auth) as r:
                    data = (await r.json(content_type=None))["data"]
                if data["state"] in ("success", "fail"):
                    break
            if data["state"] == "success":
                url = yaml.safe_load(data["resultJson"])["resultUrls"][0]
                async with http.get(url) as r:
                    Path(out, f"{item['id']}.mp4").write_bytes(await r.read())

        await asyncio.gather(*(one(item) for item in items))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
