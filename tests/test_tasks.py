"""Tasks: fixed splits, the real data path and its errors, and the quadratic's exact spectrum."""

import shutil

import pytest
import torch

from nesterov_bench.errors import ConfigError
from nesterov_bench.tasks import TASKS, make_task
from nesterov_bench.tasks.vision import ConvTask

from .conftest import REPO

ROOT, MIRROR = REPO / "data", REPO.parent / "shared" / "data"
DATA_CFG = {"root": str(ROOT), "source": str(MIRROR), "download": False, "generated": False}
CPU = torch.device("cpu")


def image_task(name="mnist_logreg", **kw):
    return make_task({"name": name, "val_size": 10000, "train_size": None, "test_size": None,
                      "data_seed": 0, **kw})


@pytest.mark.parametrize("name", ["mnist_logreg", "fmnist_cnn"])
def test_real_images_split_50k_10k_10k_standardised(name):
    data = image_task(name).load_data(DATA_CFG, CPU)
    assert (len(data.train), len(data.val), len(data.test)) == (50000, 10000, 10000)
    assert data.train.x.shape[1:] == (1, 28, 28) and data.train.x.dtype == torch.float32
    assert abs(data.train.x.mean().item()) < 1e-3 and abs(data.train.x.std().item() - 1) < 1e-3
    assert set(data.train.y.unique().tolist()) == set(range(10))


def test_the_second_articles_pipeline_all_60k_images_and_normalize_half():
    """task.val_size=0 trains on the whole training set; task.normalize=half is the post's
    Normalize((0.5,), (0.5,)): pixels x / 255 mapped to 2 x - 1, in [-1, 1], the test split alike."""
    data = image_task(val_size=0, normalize="half").load_data(DATA_CFG, CPU)
    assert (len(data.train), data.val, len(data.test)) == (60000, None, 10000)
    assert list(data.evaluation_splits()) == ["test"]
    standard = image_task().load_data(DATA_CFG, CPU)
    assert data.train.x.min().item() == -1.0 and data.train.x.max().item() == 1.0
    assert data.test.x.min().item() == -1.0 and data.test.x.max().item() == 1.0
    assert torch.equal(standard.test.y, data.test.y) and not torch.allclose(standard.test.x, data.test.x)
    assert image_task().cfg["normalize"] is None  # a run made before the option: standardised
    with pytest.raises(ConfigError, match="task.normalize must be half or null"):
        image_task(normalize="standard")


def test_validation_split_is_fixed_and_disjoint_from_training():
    a = image_task().load_data(DATA_CFG, CPU)
    b = image_task().load_data(DATA_CFG, CPU)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.val.y, image_task(data_seed=1).load_data(DATA_CFG, CPU).val.y)
    # Disjointness, checked exactly on generated images (all distinct, unlike MNIST's few twins).
    g = image_task(val_size=500).load_data({**DATA_CFG, "generated": True}, CPU)
    rows = lambda s: {r.numpy().tobytes() for r in s.x.flatten(1)}  # noqa: E731
    assert len(rows(g.train)) == len(g.train) and not rows(g.val) & rows(g.train)


def test_subsets_take_the_first_examples_of_the_fixed_split():
    full = image_task().load_data(DATA_CFG, CPU)
    sub = image_task(train_size=100, test_size=50).load_data(DATA_CFG, CPU)
    assert torch.equal(sub.train.y, full.train.y[:100]) and len(sub.test) == 50
    with pytest.raises(ConfigError, match="task.train_size"):
        image_task(train_size=10**6).load_data(DATA_CFG, CPU)


def test_archives_are_copied_from_the_mirror_and_md5_checked(tmp_path):
    root = tmp_path / "root"
    data = image_task().load_data({**DATA_CFG, "root": str(root)}, CPU)
    assert len(data.test) == 10000
    assert (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()


def test_corrupted_archive_is_refused_with_its_path(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (MIRROR / "MNIST" / "raw").iterdir():
        shutil.copy(f, raw / f.name)
    with open(raw / "t10k-labels-idx1-ubyte.gz", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte.gz is corrupted"):
        image_task().load_data({**DATA_CFG, "root": str(tmp_path), "source": None}, CPU)


def test_missing_cifar_is_a_clear_error_not_fake_data(tmp_path):
    task = make_task({"name": "cifar10_cnn", "val_size": 5000, "train_size": None,
                      "test_size": None, "data_seed": 0})
    with pytest.raises(ConfigError, match="CIFAR-10 not found.*data.download=true"):
        task.load_data({**DATA_CFG, "root": str(tmp_path)}, CPU)
    generated = task.load_data({**DATA_CFG, "root": str(tmp_path), "generated": True}, CPU)
    assert generated.train.x.shape[1:] == (3, 32, 32)


def quadratic(**kw):
    cfg = {"name": "quadratic", "dim": 20, "rows": 20, "kappa": 100.0, "mu": 0.5,
           "spectrum": "linear", "noise_std": 0.0, "data_seed": 0, "dtype": "float64", **kw}
    task = make_task(cfg)
    return task, task.load_data({}, CPU)


@pytest.mark.parametrize("spectrum", ["linear", "log"])
def test_quadratic_hessian_has_the_declared_spectrum(spectrum):
    task, data = quadratic(spectrum=spectrum)
    m = data.train.x
    eig = torch.linalg.eigvalsh(m.T @ m / m.shape[0])
    assert eig.min().item() == pytest.approx(0.5, rel=1e-10)
    assert eig.max().item() == pytest.approx(50.0, rel=1e-10)
    assert torch.allclose(eig, task.eigenvalues(), rtol=1e-9)


@pytest.mark.parametrize("rows,noise", [(20, 0.0), (40, 1.0)])
def test_quadratic_suboptimality_is_exact(rows, noise):
    task, data = quadratic(rows=rows, noise_std=noise)
    model = task.build_model().double()
    optimum = data.optimum
    metrics = task.evaluate(model, data.train, 1000, data)
    assert metrics["suboptimality"] == pytest.approx(metrics["loss"] - optimum.f_star, rel=1e-9)
    with torch.no_grad():
        model.weight[0] = optimum.x_star
    at_opt = task.evaluate(model, data.train, 1000, data)
    assert at_opt["suboptimality"] < 1e-20 and at_opt["loss"] == pytest.approx(optimum.f_star, abs=1e-12)
    assert (optimum.f_star > 0.1) == (noise > 0)  # noise and n > d leave a positive optimum value


def test_linreg_matches_the_article_setting():
    task = make_task({"name": "linreg", "n_train": 1000, "n_val": 1000, "n_test": 1000,
                      "noise_std": 20.0, "data_seed": 42})
    data = task.load_data({}, CPU)
    assert data.train.x.shape == (1000, 1)
    w = data.truth["w"]
    residual = data.test.y - w * data.test.x[:, 0]
    assert residual.std().item() == pytest.approx(20.0, rel=0.1)
    assert 0 < w < 100 and data.truth["b"] == 0.0


@pytest.mark.parametrize("cfg,match", [
    ({"name": "quadratic", "dim": 10, "rows": 5}, "task.rows"),
    ({"name": "nope"}, "unknown task"),
    ({"name": "linreg", "n_train": 10, "n_val": 10, "n_test": 10, "noise_std": 1.0,
      "data_seed": 0, "extra": 1}, "task.extra"),
])
def test_bad_task_settings_are_refused(cfg, match):
    if cfg["name"] == "quadratic":
        cfg = {"kappa": 10.0, "mu": 1.0, "spectrum": "linear", "noise_std": 0.0, "data_seed": 0,
               "dtype": "float32", **cfg}
    with pytest.raises(ConfigError, match=match):
        make_task(cfg)


@pytest.mark.slow
def test_parallel_jobs_stage_one_fresh_data_root_safely(tmp_path):
    """Two processes staging the same dataset at once (joblib workers) both get whole files."""
    import subprocess
    import sys

    code = ("import sys; from nesterov_bench.data import load_images; "
            "x = load_images('MNIST', sys.argv[1], sys.argv[2], False)[0]; print(x.shape[0])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(MIRROR)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert all(out.strip() == "60000" for out, _ in outs)


def test_cut_short_extraction_is_redone(tmp_path):
    image_task().load_data({**DATA_CFG, "root": str(tmp_path)}, CPU)
    extracted = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    with open(extracted, "r+b") as f:
        f.truncate(1000)  # as a killed extraction leaves it
    from nesterov_bench.data import _load_images

    _load_images.cache_clear()
    data = image_task().load_data({**DATA_CFG, "root": str(tmp_path)}, CPU)
    assert len(data.test) == 10000 and extracted.stat().st_size == 16 + 10000 * 28 * 28


@pytest.mark.parametrize("name", ["linreg", "quadratic"])
def test_a_task_keeps_no_state_between_loading_and_evaluating(name):
    """One task object serves runs on different data: load_data leaves the task as it was, and
    evaluation reads what it needs (the quadratic's x* and H) from the data it is given."""
    cfg = {"linreg": {"name": "linreg", "n_train": 50, "n_val": 20, "n_test": 20, "noise_std": 1.0,
                      "data_seed": 0},
           "quadratic": {"name": "quadratic", "dim": 4, "rows": 8, "kappa": 10.0, "mu": 1.0,
                         "spectrum": "linear", "noise_std": 0.0, "data_seed": 0, "dtype": "float64"}}[name]
    task = make_task(cfg)
    before = dict(vars(task))
    one = task.load_data({}, CPU)
    other = task.load_data({}, CPU)
    assert vars(task) == before
    if name == "quadratic":  # the same model, scored against another problem's optimum
        shifted = make_task({**cfg, "data_seed": 1}).load_data({}, CPU)
        model = task.build_model()
        on_one = task.evaluate(model, one.train, 100, one)
        assert task.evaluate(model, other.train, 100, other) == on_one
        assert task.evaluate(model, one.train, 100, shifted)["suboptimality"] != on_one["suboptimality"]


MLP = {"name": "mnist_mlp", "val_size": 100, "train_size": None, "test_size": None, "data_seed": 0}


def test_mnist_mlp_hidden_widths_default_to_deepobs_and_can_be_set():
    deepobs = make_task({**MLP, "hidden": None}).build_model()
    assert [m.out_features for m in deepobs if isinstance(m, torch.nn.Linear)] == [1000, 500, 100, 10]
    small = make_task({**MLP, "hidden": [16, 16]}).build_model()
    assert sum(p.numel() for p in small.parameters()) == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    for bad in ([], [0, 16], [16.5], [True], "16"):
        with pytest.raises(ConfigError, match="task.hidden"):
            make_task({**MLP, "hidden": bad})


@pytest.mark.parametrize("name", ["mnist_cnn", "fmnist_cnn"])
def test_2c2d_width_defaults_to_deepobs_and_scales_channels_and_the_dense_layer(name):
    cfg = {**MLP, "name": name}

    def sizes(width):
        model = make_task({**cfg, "width": width}).build_model()
        return ([m.out_channels for m in model if isinstance(m, torch.nn.Conv2d)]
                + [m.out_features for m in model if isinstance(m, torch.nn.Linear)])

    assert sizes(None) == sizes(1.0) == [32, 64, 1024, 10]
    assert sizes(0.25) == [8, 16, 256, 10]
    assert make_task(cfg).cfg["width"] is None  # a run made before the option: DeepOBS's network
    for bad in (0, 1.5, -0.25, "half"):
        with pytest.raises(ConfigError, match="task.width"):
            make_task({**cfg, "width": bad})


@pytest.mark.parametrize(("name", "width"), [("fmnist_cnn", 0.25), ("cifar10_cnn", None)])
def test_channels_last_is_the_same_network_to_float_rounding(name, width):
    """task.memory_format=channels_last lays out every conv weight (and so each activation) channels last:
    from the same initial weights, the loss and every gradient equal the default layout's to rounding."""
    cfg = {**MLP, "name": name, **({"width": width} if width else {})}
    default, last = make_task(cfg), make_task({**cfg, "memory_format": "channels_last"})
    assert default.cfg["memory_format"] is None  # a run made before the option: PyTorch's default
    torch.manual_seed(0)
    a = default.build_model()
    torch.manual_seed(0)
    b = last.build_model()
    convs = [m.weight for m in b if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(m.weight.is_contiguous(memory_format=torch.channels_last)
                   for m in a if isinstance(m, torch.nn.Conv2d))
    x = torch.randn(16, *default.shape, generator=torch.Generator().manual_seed(1))
    y = torch.arange(16) % 10
    losses = []
    for model in (a, b):
        loss = default.loss(model(x), y)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="task.memory_format"):
        make_task({**cfg, "memory_format": "nhwc"})


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def _pools_of_the_cnns() -> list[torch.nn.MaxPool2d]:
    """Every max-pool of the registered tasks' networks (the settings the suite uses)."""
    pools = {}
    for name, cls in TASKS.items():
        if issubclass(cls, ConvTask):
            for m in make_task({**MLP, "name": name}).build_model():
                if isinstance(m, torch.nn.MaxPool2d):
                    pools[repr(m)] = m
    return list(pools.values())


@pytest.mark.parametrize("pool", _pools_of_the_cnns(), ids=repr)
def test_max_pool_equals_torchs_bit_for_bit(pool):
    """The CNNs' max-pool (tasks/pool.py: torch's channels-last kernel forward, its NCHW kernel backward)
    gives nn.MaxPool2d's values and gradients bit for bit, on inputs made of ties (small integers, as the
    background of an image after a convolution), NaNs, infinities and signed zeros, odd and even sizes;
    with and without gradients."""
    assert type(pool) is not torch.nn.MaxPool2d  # the CNNs use the suite's pool
    reference = torch.nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                                   ceil_mode=pool.ceil_mode)
    g = torch.Generator().manual_seed(0)
    for trial in range(40):
        x = torch.randint(-3, 4, (3, 5, 9 + trial % 4, 10 + trial % 3), generator=g).float()
        r = torch.rand(x.shape, generator=g)
        x[r < 0.04] = float("nan")
        x[(r >= 0.04) & (r < 0.08)] = -0.0
        x[(r >= 0.08) & (r < 0.10)] = float("-inf")
        x[(r >= 0.10) & (r < 0.12)] = float("inf")
        with torch.no_grad():
            assert torch.equal(_bits(pool(x)), _bits(reference(x)))
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_a, out_b = pool(a), reference(b)
        assert out_a.is_contiguous() and torch.equal(_bits(out_a), _bits(out_b))
        grad = torch.randint(-2, 3, out_b.shape, generator=g).float()
        grad[torch.rand(grad.shape, generator=g) < 0.2] = -0.0
        out_a.backward(grad)
        out_b.backward(grad)
        assert torch.equal(_bits(a.grad), _bits(b.grad))


def test_max_pool_is_torchs_own_where_it_gains_nothing():
    """Channels-last input stays channels last (task.memory_format), and inside a vmap (a population) the
    pool is nn.MaxPool2d's, member by member."""
    pool = _pools_of_the_cnns()[0]
    reference = torch.nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding)
    x = torch.randn(4, 6, 8, 8, generator=torch.Generator().manual_seed(1))
    last = x.contiguous(memory_format=torch.channels_last)
    assert pool(last).is_contiguous(memory_format=torch.channels_last)
    stacked = torch.stack([x, -x])
    assert torch.equal(torch.func.vmap(pool)(stacked), torch.stack([reference(x), reference(-x)]))
