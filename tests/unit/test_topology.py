"""The RabbitMQ topology, as pure data (no broker)."""

from __future__ import annotations

import dataclasses

import aio_pika
import pytest

from conveyor_kernel.model import MAX_PRIORITY
from conveyor_kernel.topology import (
    DELAY_TIERS_S,
    PARKING_ROUTING_KEY,
    WORK_ROUTING_KEY,
    Binding,
    QueueSpec,
    Topology,
    build_topology,
    control_exchange_name,
    dead_letter_exchange_name,
    delay_exchange_name,
    delay_queue_name,
    deliveries_queue_name,
    events_exchange_name,
    jobs_exchange_name,
    live_exchange_name,
    notifier_dead_letter_exchange_name,
    notifier_delay_exchange_name,
    notifier_delay_queue_name,
    notifier_events_queue_name,
    notifier_exchange_name,
    notifier_parking_lot_queue_name,
    parking_lot_queue_name,
    work_queue_name,
)

NS = "ns1"


@pytest.fixture
def topo() -> Topology:
    return build_topology(NS)


def queue(topo: Topology, name: str) -> QueueSpec:
    matches = [q for q in topo.queues if q.name == name]
    assert len(matches) == 1, f"{name} declared {len(matches)} times"
    return matches[0]


def test_names_come_from_helpers(topo: Topology) -> None:
    assert [e.name for e in topo.exchanges] == [
        jobs_exchange_name(NS),
        dead_letter_exchange_name(NS),
        delay_exchange_name(NS),
        control_exchange_name(NS),
        live_exchange_name(NS),
        events_exchange_name(NS),
        notifier_exchange_name(NS),
        notifier_delay_exchange_name(NS),
        notifier_dead_letter_exchange_name(NS),
    ]
    assert [q.name for q in topo.queues] == [
        work_queue_name(NS),
        parking_lot_queue_name(NS),
        *(delay_queue_name(NS, t) for t in DELAY_TIERS_S),
        notifier_events_queue_name(NS),
        deliveries_queue_name(NS),
        notifier_parking_lot_queue_name(NS),
        *(notifier_delay_queue_name(NS, t) for t in DELAY_TIERS_S),
    ]
    assert topo.jobs_exchange == jobs_exchange_name(NS)
    assert topo.work_queue == work_queue_name(NS)
    assert topo.parking_lot_queue == parking_lot_queue_name(NS)
    assert topo.namespace == NS


def test_every_name_starts_with_namespace(topo: Topology) -> None:
    names = [e.name for e in topo.exchanges] + [q.name for q in topo.queues]
    assert all(n.startswith(f"{NS}.") for n in names)
    assert len(set(names)) == len(names)


def test_namespaces_do_not_collide() -> None:
    a, b = build_topology("a"), build_topology("b")
    names_a = {e.name for e in a.exchanges} | {q.name for q in a.queues}
    names_b = {e.name for e in b.exchanges} | {q.name for q in b.queues}
    assert not names_a & names_b


def test_exchanges_are_durable_direct(topo: Topology) -> None:
    for ex in topo.exchanges:
        expected = {
            control_exchange_name(NS): aio_pika.ExchangeType.FANOUT,
            events_exchange_name(NS): aio_pika.ExchangeType.TOPIC,
            live_exchange_name(NS): aio_pika.ExchangeType.TOPIC,
        }.get(ex.name, aio_pika.ExchangeType.DIRECT)
        assert ex.type == expected
        assert ex.durable


def test_work_queue_arguments(topo: Topology) -> None:
    work = queue(topo, work_queue_name(NS))
    args = work.argument_dict()
    assert args["x-max-priority"] == MAX_PRIORITY == 10
    assert args["x-queue-type"] == "classic"
    assert args["x-dead-letter-exchange"] == dead_letter_exchange_name(NS)
    assert args["x-dead-letter-routing-key"] == PARKING_ROUTING_KEY
    assert work.durable
    assert work.bindings == (Binding(jobs_exchange_name(NS), WORK_ROUTING_KEY),)


def test_parking_lot_bound_to_dlx(topo: Topology) -> None:
    parking = queue(topo, parking_lot_queue_name(NS))
    assert parking.bindings == (Binding(dead_letter_exchange_name(NS), PARKING_ROUTING_KEY),)
    assert parking.argument_dict() == {"x-queue-type": "classic"}
    assert parking.durable
    # The parking lot must not dead-letter anywhere itself.
    assert "x-dead-letter-exchange" not in parking.argument_dict()


def test_bindings_reference_declared_exchanges(topo: Topology) -> None:
    declared = {e.name for e in topo.exchanges}
    for q in topo.queues:
        for b in q.bindings:
            assert b.exchange in declared


@pytest.mark.parametrize(
    ("path", "attr"),
    [
        ((), "namespace"),
        (("exchanges", 0), "name"),
        (("queues", 0), "name"),
        (("queues", 0), "arguments"),
    ],
)
def test_dataclasses_are_frozen(topo: Topology, path: tuple[object, ...], attr: str) -> None:
    obj: object = topo
    for step in path:
        obj = obj[step] if isinstance(step, int) else getattr(obj, step)  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, attr, "changed")


def test_binding_is_frozen(topo: Topology) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        topo.queues[0].bindings[0].routing_key = "x"  # type: ignore[misc]


def test_building_twice_is_equal_and_hashable() -> None:
    a, b = build_topology(NS), build_topology(NS)
    assert a == b
    assert hash(a) == hash(b)
    assert build_topology("other") != a


def test_delay_tiers_expire_back_into_the_work_exchange(topo: Topology) -> None:
    by_name = {q.name: q for q in topo.queues}
    for tier in DELAY_TIERS_S:
        q = by_name[delay_queue_name(NS, tier)]
        args = q.argument_dict()
        assert args["x-message-ttl"] == tier * 1000
        assert args["x-dead-letter-exchange"] == jobs_exchange_name(NS)
        assert args["x-dead-letter-routing-key"] == WORK_ROUTING_KEY
        assert q.bindings[0].exchange == delay_exchange_name(NS)


def test_notifier_queues_dead_letter_to_their_parking_lot(topo: Topology) -> None:
    for name in (notifier_events_queue_name(NS), deliveries_queue_name(NS)):
        args = queue(topo, name).argument_dict()
        assert args["x-dead-letter-exchange"] == notifier_dead_letter_exchange_name(NS)
        assert args["x-dead-letter-routing-key"] == PARKING_ROUTING_KEY
    parking = queue(topo, notifier_parking_lot_queue_name(NS))
    assert parking.bindings == (
        Binding(notifier_dead_letter_exchange_name(NS), PARKING_ROUTING_KEY),
    )
    events = queue(topo, notifier_events_queue_name(NS))
    assert events.bindings == (Binding(events_exchange_name(NS), "job.*"),)


def test_notifier_delay_tiers_expire_into_the_deliveries_queue(topo: Topology) -> None:
    deliveries = queue(topo, deliveries_queue_name(NS))
    (binding,) = deliveries.bindings
    for tier in DELAY_TIERS_S:
        args = queue(topo, notifier_delay_queue_name(NS, tier)).argument_dict()
        assert args["x-message-ttl"] == tier * 1000
        assert args["x-dead-letter-exchange"] == binding.exchange
        assert args["x-dead-letter-routing-key"] == binding.routing_key
