"""The shard plan, without Prefect: stable shards, finished images left out, keys that name a job."""

from __future__ import annotations

from prefect_stablestudio.flows.models import EditItem
from prefect_stablestudio.flows.shard_plan import plan_shards


def _items(names: list[str]) -> list[EditItem]:
    return [EditItem(images=[f"s3://b/in/{n}.png"], output_name=f"{n}-edited.png") for n in names]


def test_every_item_lands_in_exactly_one_shard_and_finished_ones_are_counted_not_planned() -> None:
    items = _items([f"img{i}" for i in range(50)])
    plan = plan_shards(items, {"img3-edited.png", "img7-edited.png"}, shards=4, job_key="job")
    planned = [i.images[0] for s in plan for i in s.items]
    assert len(planned) == len(set(planned)) == 48
    assert sum(s.done for s in plan) == 2
    assert [s.index for s in plan] == [0, 1, 2, 3]
    assert all(s.items for s in plan)  # 50 hashed URIs spread over every shard


def test_an_image_keeps_its_shard_when_others_arrive_or_finish() -> None:
    before = plan_shards(_items([f"img{i}" for i in range(20)]), set(), shards=3, job_key="job")
    after = plan_shards(
        _items([f"img{i}" for i in range(40)]), {"img0-edited.png"}, shards=3, job_key="job"
    )
    where = {i.images[0]: s.key for s in after for i in s.items}
    for shard in before:
        for item in shard.items:
            if item.images[0] in where:
                assert where[item.images[0]] == shard.key
    assert [s.key for s in before] == [s.key for s in after]


def test_shard_keys_differ_between_jobs() -> None:
    items = _items(["a", "b"])
    one = plan_shards(items, set(), shards=2, job_key="job-1")
    two = plan_shards(items, set(), shards=2, job_key="job-2")
    assert {s.key for s in one}.isdisjoint({s.key for s in two})
