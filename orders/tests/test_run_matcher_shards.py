"""``run_matcher --shard-file --shard``: a matcher pod finds its markets in the shard map.

The map is what the Kubernetes StatefulSet mounts (k8s/base/matcher-shards.yaml); a
market in two shards would mean two writers, so the file is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orders.management.commands.run_matcher import shard_map_read
from orders.matcher import MarketMatcher
from orders.models import MatcherState


@contextmanager
def held_elsewhere(symbol: str) -> Iterator[None]:
    """Another writer holds the market's matcher lock during the block."""
    other = MarketMatcher(symbol=symbol)
    other.start()
    try:
        yield
    finally:
        other.stop()


@pytest.fixture
def shard_file(tmp_path):
    def write(content) -> str:
        path = tmp_path / "shards.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return str(path)

    return write


def test_the_map_gives_each_shard_its_markets(shard_file, tmp_path):
    shard_file({"0": ["eth-usdt", " BTC-USDT"], "1": ["SOL-USDT"], "2": []})
    assert shard_map_read(path=tmp_path / "shards.json") == {0: ["ETH-USDT", "BTC-USDT"], 1: ["SOL-USDT"], 2: []}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"0": ["ETH-USDT"], "1": ["eth-usdt"]}, "ETH-USDT is assigned to shards 0 and 1"),
        ("{not json", "not valid JSON"),
        (["ETH-USDT"], "must map shard numbers"),
        ({"first": ["ETH-USDT"]}, "'first' is not a shard number"),
        ({"0": "ETH-USDT"}, "shard 0 must list market symbols"),
        ({"0": ["ETH-USDT", ""]}, "shard 0 must list market symbols"),
    ],
)
def test_a_malformed_map_is_refused(shard_file, tmp_path, content, message):
    shard_file(content)
    with pytest.raises(CommandError, match=message):
        shard_map_read(path=tmp_path / "shards.json")


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(CommandError, match="cannot read the shard file"):
        shard_map_read(path=tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard", "0"], "--shard-file and --shard go together"),
        (["--shard-file", "{file}"], "--shard-file and --shard go together"),
        (["--shard-file", "{file}", "--shard", "0", "--market", "ETH-USDT"], "exclude each other"),
        (["--shard-file", "{file}", "--shard", "5"], r"shard 5 is not in .* \(shards: \[0, 1\]\)"),
    ],
)
def test_bad_shard_options_start_nothing(markets, shard_file, args, message):
    path = shard_file({"0": ["ETH-USDT"], "1": ["BTC-USDT"]})
    with pytest.raises(CommandError, match=message):
        call_command("run_matcher", *[a.format(file=path) for a in args])
    assert not MatcherState.objects.exists()


def test_the_command_runs_exactly_the_markets_of_its_shard(markets, shard_file):
    """Shard 1's market is taken by another writer: the shard-1 command fails on that
    market and touches no other; shard 0 (the other market) is unaffected by it."""
    path = shard_file({"0": ["ETH-USDT"], "1": ["BTC-USDT"]})
    with held_elsewhere("BTC-USDT"), pytest.raises(CommandError, match="a matcher for BTC-USDT is already running"):
        call_command("run_matcher", "--shard-file", path, "--shard", "1")
    assert list(MatcherState.objects.values_list("market__symbol", "epoch")) == [("BTC-USDT", 1)]


def test_a_shard_takes_every_market_it_lists_in_order(markets, shard_file):
    """The first market is started (its epoch moves), the second is held elsewhere: the
    command stops with that market's error and releases the first."""
    path = shard_file({"0": ["ETH-USDT", "BTC-USDT"]})
    with held_elsewhere("BTC-USDT"), pytest.raises(CommandError, match="BTC-USDT is already running"):
        call_command("run_matcher", "--shard-file", path, "--shard", "0")
    assert dict(MatcherState.objects.values_list("market__symbol", "epoch")) == {"ETH-USDT": 1, "BTC-USDT": 1}
    again = MarketMatcher(symbol="ETH-USDT")
    again.start()  # the command released ETH-USDT's lock when it stopped
    again.stop()


def test_active_markets_in_no_shard_are_named(markets, shard_file):
    path = shard_file({"0": ["BTC-USDT"]})
    stderr = StringIO()
    with held_elsewhere("BTC-USDT"), pytest.raises(CommandError, match="already running"):
        call_command("run_matcher", "--shard-file", path, "--shard", "0", stderr=stderr)
    assert "warning: active market ETH-USDT is in no shard" in stderr.getvalue()
    assert "BTC-USDT" not in stderr.getvalue()
