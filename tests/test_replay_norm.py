import jax
import jax.numpy as jnp
import numpy as np

from mjxflow import normalizer, replay


def test_ring_buffer_wraps_modulo_capacity():
    buf = replay.init(5, {"x": jnp.zeros(()), "v": jnp.zeros((2,))})
    add = jax.jit(replay.add)
    buf = add(buf, {"x": jnp.arange(3.0), "v": jnp.ones((3, 2))})
    assert int(buf.ptr) == 3 and int(buf.size) == 3
    buf = add(buf, {"x": jnp.arange(3.0, 6.0), "v": 2 * jnp.ones((3, 2))})
    # items 0..5 written into 5 slots: item 5 overwrote slot 0, nothing else moved
    np.testing.assert_array_equal(buf.data["x"], [5.0, 1.0, 2.0, 3.0, 4.0])
    assert int(buf.ptr) == 1 and int(buf.size) == 5
    np.testing.assert_array_equal(buf.data["v"][:, 0], [2, 1, 1, 2, 2])


def test_sample_draws_only_valid_entries():
    buf = replay.init(100, jnp.zeros(()))
    buf = replay.add(buf, jnp.arange(1.0, 8.0))  # 7 valid entries, all non-zero
    sample = replay.sample(buf, jax.random.PRNGKey(0), 1000)
    assert np.all(np.asarray(sample) > 0)
    assert set(np.asarray(sample).tolist()) == set(range(1, 8))


def test_a_buffer_holding_one_item_only_returns_that_item():
    buf = replay.add(replay.init(4, {"x": jnp.zeros(())}), {"x": jnp.array([7.0])})
    batch = replay.sample(buf, jax.random.PRNGKey(0), 64)
    np.testing.assert_array_equal(batch["x"], np.full(64, 7.0))  # never the empty slots


def test_buffer_keeps_each_leaf_dtype():
    buf = replay.init(3, {"obs": jnp.zeros((2,), jnp.float16), "flag": jnp.zeros((), jnp.uint8), "i": jnp.zeros((), jnp.int32)})
    assert {k: v.dtype for k, v in buf.data.items()} == {"obs": jnp.float16, "flag": jnp.uint8, "i": jnp.int32}
    assert buf.data["obs"].shape == (3, 2) and buf.size.dtype == jnp.int32


def test_bytes_per_item():
    assert replay.bytes_per_item({"a": jnp.zeros((3,)), "b": jnp.zeros((), jnp.int32)}) == 16
    # each leaf at its own item size
    assert replay.bytes_per_item({"a": np.zeros((5,), np.uint8), "b": np.zeros((2, 3), np.float16)}) == 5 + 12


def test_running_stats_match_numpy():
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 4)).astype(np.float32)
    stats = normalizer.init(4)
    for chunk in np.split(data, [10, 11, 500, 730]):
        stats = normalizer.update(stats, jnp.asarray(chunk))
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(normalizer.variance(stats), data.var(0), rtol=1e-3)
    z = normalizer.normalize(stats, jnp.asarray(data))
    np.testing.assert_allclose(np.asarray(z).mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.asarray(z).std(0), 1.0, atol=1e-3)
