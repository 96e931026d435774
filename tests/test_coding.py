import numpy as np
import pytest
import torch

from fumd.coding.decoder import decode, population_rates
from fumd.coding.encoder import features_to_unit, lowpass_rates, poisson_refractory
from fumd.coding.text import text_features
from fumd.coding.vocabulary import LabelVocabulary
from fumd.errors import VocabularyFullError


def test_poisson_encoder_respects_refractory_period_and_rate():
    gen = torch.Generator().manual_seed(0)
    rates = torch.full((50, 200), 150.0)  # close to the 1/5 ms ceiling
    since = torch.full((200,), 10**6, dtype=torch.int64)
    trains = []
    for _ in range(40):  # 2 s of simulated time, the refractory clock carried across cycles
        s, since = poisson_refractory(rates, since, 1.0, 5.0, gen)
        trains.append(s)
    spikes = torch.cat(trains)
    for n in range(200):
        t = spikes[:, n].nonzero().squeeze(1)
        assert t.numel() > 10
        assert int(torch.diff(t).min()) >= 5  # never two spikes within 5 ms
    rate = spikes.float().mean() * 1000.0
    assert float(rate) == pytest.approx(150.0, rel=0.08)  # dead-time correction keeps the rate


def test_lowpass_ramps_over_five_steps():
    r = lowpass_rates(torch.tensor([0.0]), torch.tensor([100.0]), 8, 5)
    assert r[:, 0].tolist() == pytest.approx([20, 40, 60, 80, 100, 100, 100, 100])


def test_feature_scaling():
    assert features_to_unit(np.array([2.0, 4.0, 6.0]), "minmax").tolist() == [0.0, 0.5, 1.0]
    assert features_to_unit(np.array([-1.0, 0.5, 3.0]), "clip01").tolist() == [0.0, 0.5, 1.0]
    assert features_to_unit(np.array([3.0, 3.0]), "minmax").tolist() == [1.0, 1.0]


def test_text_features_are_stable_and_discriminative():
    a = text_features("The quick brown fox", 64)
    assert a.shape == (64,) and np.isclose(np.linalg.norm(a), 1.0)
    assert np.array_equal(a, text_features("the  QUICK brown fox", 64))
    assert float(a @ text_features("lorem ipsum dolor", 64)) < float(a @ text_features("the quick brown cat", 64))


def test_decoder_argmax_and_confidence():
    raster = torch.zeros(50, 6, dtype=torch.bool)
    raster[:10, 0] = True  # population 0: neurons 0, 1
    raster[:4, 2] = True  # population 1: neurons 2, 3
    out = torch.tensor([[0, 1], [2, 3], [4, 5]])
    rates = population_rates(raster.sum(0), out, 50.0)  # 50 steps of 1 ms
    assert rates.tolist() == pytest.approx([100.0, 40.0, 0.0])
    assert decode(rates) == (0, pytest.approx(0.6))
    assert decode(torch.zeros(3, dtype=torch.float64)) == (0, 0.0)


def test_vocabulary_grows_to_capacity():
    v = LabelVocabulary(2)
    assert v.add("a") == 0 and v.add("b") == 1 and v.add("a") == 0
    with pytest.raises(VocabularyFullError, match="vocabulary is full"):
        v.add("c")
    assert v.name(1) == "b" and v.name(5) == "action_5"


def test_refractory_numpy_path_equals_torch_path():
    """The CPU (NumPy) form of the dead-time loop gives the same spikes and clocks as the torch one."""
    from fumd.coding.encoder import refractory_numpy, refractory_torch

    g = torch.Generator().manual_seed(11)
    candidates = torch.rand(50, 300, generator=g) < 0.4
    since = torch.randint(0, 8, (300,), generator=g)
    a_spikes, a_since = refractory_torch(candidates, since, 5.0)
    b_spikes, b_since = refractory_numpy(candidates, since, 5.0)
    assert torch.equal(a_spikes, b_spikes) and torch.equal(a_since, b_since)
    assert 0 < int(a_spikes.sum()) < int(candidates.sum())  # the dead time removed some


def test_online_standardisation_into_on_off_channels():
    """Running per-feature mean/variance (exact over the first inputs), ON = clip(z / z_scale),
    OFF = clip(-z / z_scale); the statistics are state (saved and restored)."""
    import numpy as np
    import torch

    from fumd.coding.encoder import RateEncoder
    from fumd.config import EncoderConfig

    enc = RateEncoder(EncoderConfig(z_scale=2.0), 2, torch.device("cpu"))
    rng = np.random.default_rng(0)
    xs = rng.normal([10.0, -3.0], [2.0, 0.5], (500, 2))
    for x in xs:
        u = enc.unit(x)
    assert u.shape == (4,)
    assert np.allclose(enc.mean, xs.mean(0)) and np.allclose(enc.var, xs.var(0))
    z = (xs[-1] - enc.mean) / np.sqrt(enc.var)
    assert np.allclose(u, np.clip(np.concatenate([z, -z]) / 2.0, 0.0, 1.0))
    assert (u[:2] == 0).sum() + (u[2:] == 0).sum() >= 2  # one of ON / OFF is silent per feature
    # a large record is large relative to the others (per-record min-max would erase it)
    big = enc.unit(np.array([20.0, -3.0]))
    assert big[0] == 1.0 and big[2] == 0.0
    other = RateEncoder(EncoderConfig(z_scale=2.0), 2, torch.device("cpu"))
    other.load_state_dict(enc.state_dict())
    assert np.array_equal(other.unit(np.array([11.0, -2.0])), enc.unit(np.array([11.0, -2.0])))


def test_regular_spike_train_counts_are_the_expected_count_within_one_spike():
    """encoder.spike_train = regular (issue #15): a phase accumulator; each channel's count over a
    cycle is its rate x duration to within one spike (a Poisson train's varies by its square root),
    and channels start at random phases (seeded: the same generator gives the same spikes)."""
    from fumd.coding.encoder import regular_spikes

    rates = torch.tensor([0.0, 7.0, 33.0, 50.0, 100.0]).repeat(200, 1)
    expected = rates[0] * 0.2
    counts = []
    for seed in range(20):
        spikes, since = regular_spikes(rates, torch.zeros(5), 1.0, torch.Generator().manual_seed(seed))
        counts.append(spikes.sum(0).float())
        assert bool(((spikes.sum(0) - expected).abs() < 1.0).all())
    again, _ = regular_spikes(rates, torch.zeros(5), 1.0, torch.Generator().manual_seed(19))
    assert torch.equal(again, spikes)
    assert torch.stack(counts).std(0)[3] < 0.6  # Poisson at 50 Hz x 0.2 s: sd ~3
    poisson = torch.stack([poisson_refractory(rates, torch.zeros(5), 1.0, 5.0, torch.Generator().manual_seed(s))[0]
                           .sum(0).float() for s in range(20)])
    assert poisson.std(0)[3] > 1.5
    first = spikes.float().argmax(0)[2:]  # channels do not start in lockstep
    assert first.unique().numel() > 1


@pytest.mark.parametrize("train", ["regular", "poisson"])
def test_encoder_uses_the_configured_spike_train(train):
    """``RateEncoder.encode`` follows ``encoder.spike_train``: regular counts are the expected count
    to within one spike on every channel, Poisson counts are not (issue #15's default)."""
    from fumd.coding.encoder import RateEncoder
    from fumd.config import EncoderConfig

    enc = RateEncoder(EncoderConfig(spike_train=train), 32, torch.device("cpu"))
    rates = torch.full((64,), 50.0)
    enc.prev_rates = rates.clone()  # no low-pass ramp: every step at 50 Hz
    spikes = enc.encode(rates, 200, 1.0, torch.Generator().manual_seed(0))
    off_by = (spikes.sum(0).float() - 10.0).abs()
    assert bool((off_by < 1.0).all()) == (train == "regular")
