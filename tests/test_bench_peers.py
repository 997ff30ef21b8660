"""The benchmark's peers: every one answers both calls itself (none falls back to the base)."""

from __future__ import annotations

import inspect

from benchmarks import peers


def test_every_peer_implements_the_calls_of_an_adapter() -> None:
    classes = {peers.Floor, peers.HolySheep, peers.OpenAISDK, peers.OpenAIAioHttp, peers.HttpxSSE}
    classes |= {make for make in peers.available().values() if inspect.isclass(make)}
    for cls in classes:
        for call in ("aclose", "stream", "complete"):
            assert getattr(cls, call) is not getattr(peers.Adapter, call), (cls.__name__, call)
    assert peers.OpenAIAioHttp.backends == ("asyncio",)
    assert peers.OpenAISDK.backends == ("asyncio", "trio")
