"""The pieces of the agent-host pool that are plain logic: when a host claims a broadcast call,
the id prefixes hosts sharing an Asterisk use, the CallBroadcast event, several Asterisk servers
in the service config, and finding a call's controller among several."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ari_app.call import AriCall
from ari_app.client import AriClient, AriConfig
from ari_app.controller import AriController
from ari_app.events import CallBroadcast, parse_event
from phoneagent.service import CLAIM_SPREAD_S, Controllers, claim_delay, claim_offers, pool_id_prefix
from phoneagent.settings import SettingsError, load_settings


def test_an_idle_host_claims_at_once_a_busier_one_later_and_a_full_one_never() -> None:
    assert claim_delay(0, 4) == 0.0
    assert 0 < claim_delay(1, 4) < claim_delay(3, 4) < CLAIM_SPREAD_S  # type: ignore[operator]
    assert claim_delay(4, 4) is None and claim_delay(9, 4) is None


def test_without_a_call_limit_the_delay_grows_with_load_but_never_declines() -> None:
    delays = [claim_delay(n, None) for n in (0, 1, 4, 100)]
    assert delays[0] == 0.0
    assert all(d is not None and d < CLAIM_SPREAD_S for d in delays)
    assert delays == sorted(delays)  # type: ignore[type-var]


def test_hosts_sharing_an_asterisk_never_share_or_prefix_each_others_ids() -> None:
    assert pool_id_prefix("phoneagent") == "pa-"
    prefixes = [pool_id_prefix(app) for app in ("phoneagent-a", "phoneagent-ab", "phoneagent-a-b", "phoneagent-1")]
    for p in prefixes:
        assert not p.startswith("pa-")
        assert all(p == q or not q.startswith(p) for q in prefixes)
    assert pool_id_prefix("phoneagent-a") == pool_id_prefix("phoneagent-a")  # stable across restarts (the sweep)


def test_call_broadcast_event_is_typed() -> None:
    ev = parse_event({"type": "CallBroadcast", "application": "phoneagent-a", "caller": "201", "called": "agent-pool",
                      "channel": {"id": "1718.5", "name": "PJSIP/kamailio-00000001", "state": "Ring"}})
    assert isinstance(ev, CallBroadcast)
    assert (ev.channel.id, ev.caller, ev.called, ev.application) == ("1718.5", "201", "agent-pool", "phoneagent-a")


def test_the_service_config_names_more_asterisk_servers(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text("ari:\n  url: http://10.0.0.11:8088\n  app: phoneagent-a\n  servers: [http://10.0.0.12:8088]\n")
    assert load_settings(path).ari.servers == ["http://10.0.0.12:8088"]
    path.write_text("ari:\n  servers: [10.0.0.12]\n")
    with pytest.raises(SettingsError, match="servers"):
        load_settings(path)


async def test_a_session_is_attached_through_the_controller_that_made_its_call() -> None:
    controllers = [AriController(AriClient(AriConfig(url=f"http://10.0.0.{n}:8088", user="u", password="p"))) for n in (11, 12)]
    call = AriCall(call_id="c-1", caller_id="chan-1")
    controllers[1].calls[call.call_id] = call
    group = Controllers(controllers)
    assert group.attach("c-1") is call and call.attached.is_set()
    assert group.attach("unknown") is None
    assert group.call("c-1") is call and group.active == 1
    for c in controllers:
        await c.client.aclose()


def _broadcast(chan: str) -> CallBroadcast:
    ev = parse_event({"type": "CallBroadcast", "application": "phoneagent-a", "caller": "201", "called": "agent-pool",
                      "channel": {"id": chan, "name": f"PJSIP/kamailio-{chan}", "state": "Ring"}})
    assert isinstance(ev, CallBroadcast)
    return ev


@pytest.mark.parametrize("servers", [1, 2])
async def test_two_calls_offered_at_once_to_two_idle_hosts_split_between_them(servers: int) -> None:
    """The quicker host used to take both (each offer judged 0 s on an idle host); now each host
    claims one offer at a time, from all its Asterisk servers, and counts what it has won. With
    two servers each offers one of the calls (as Kamailio spreads them), and a lock per
    server let the quicker host take both again. Asterisk stands in as a dict: the first claim
    of a channel wins. Host A answers 5 ms faster than host B."""
    owner: dict[str, str] = {}
    hosts: list[list[AriController]] = []
    for name, lag in (("a", 0.0), ("b", 0.005)):
        host = [AriController(AriClient(AriConfig(url=f"http://10.0.0.{n}:8088", user="u", password="p"))) for n in range(11, 11 + servers)]
        for c in host:
            async def claim(channel_id: str, _name: str = name, _lag: float = lag) -> bool:
                await asyncio.sleep(_lag)
                return owner.setdefault(channel_id, _name) == _name

            c.client.claim = claim  # type: ignore[method-assign]
        claim_offers(Controllers(host), 4)
        hosts.append(host)
    try:
        for i, chan in enumerate(("chan-1", "chan-2")):
            for host in hosts:
                host[i % servers]._on_broadcast(_broadcast(chan))
        await asyncio.sleep(CLAIM_SPREAD_S + 0.2)
        assert sorted(owner.values()) == ["a", "b"], owner
        assert [sum(len(c.claimed) for c in host) for host in hosts] == [1, 1]
    finally:
        for host in hosts:
            for c in host:
                await c.client.aclose()
