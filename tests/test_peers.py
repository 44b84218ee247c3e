"""The benchmark subjects are the published networks: parameter counts within 1% and MACs within 3% of the
published ones, counted each source's way (the deployed form: SPAN's re-parameterized convs)."""

import pytest
import torch

from repsr.errors import RepsrError
from repsr.peers import PEERS, build_peer
from repsr.speed import inference_params, mac_breakdown

PUBLISHED = [name for name, peer in PEERS.items() if peer.params or peer.macs]


@pytest.mark.parametrize("name", PUBLISHED)
def test_parameters_and_macs_match_the_published_ones(name):
    peer = PEERS[name]
    model = build_peer(name, 4)
    if peer.params:
        count = peer.params.count(model) if peer.params.count else inference_params(model, torch.rand(1, 3, 16, 16))
        assert count == pytest.approx(peer.params.value, rel=0.01), (count, peer.params.source)
    if peer.macs:
        x = torch.rand(1, 3, *peer.macs.lr_size)
        macs = mac_breakdown(model, x)
        count = peer.macs.count(macs, model, x) if peer.macs.count else sum(macs.values())
        assert count == pytest.approx(peer.macs.value, rel=0.03), (count, peer.macs.source)


@pytest.mark.parametrize("name", list(PEERS))
def test_every_peer_upscales_at_every_scale(name):
    for scale in (2, 4):
        model = build_peer(name, scale)
        with torch.inference_mode():
            out = model(torch.rand(1, 3, 16, 24))
        assert out.shape == (1, 3, 16 * scale, 24 * scale) and torch.isfinite(out).all()


def test_span_runs_its_merged_convs():
    model = build_peer("span28", 4)
    assert inference_params(model, torch.rand(1, 3, 8, 8)) == 150_688 < sum(p.numel() for p in model.parameters())


def test_unknown_peer_gets_a_did_you_mean():
    with pytest.raises(RepsrError, match="did you mean imdn"):
        build_peer("imnd")
