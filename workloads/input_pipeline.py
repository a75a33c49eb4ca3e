"""input_pipeline: one small conv net fed by tf.data pipelines (seed 002's tf.data advice).

What does prefetch / parallel map / cache / vectorized map / parallel interleave buy? Every
variant trains the same model, from the same seeded weights, on the same synthetic images
in the same order with the same augmentation; only the tf.data configuration changes. The
stall is measured as the ``input_wait`` phase: the time spent in ``next(iterator)``.

Sources (param ``source``):

- ``tfrecord``: ``prepare`` writes seeded synthetic images as PNG-encoded ``tf.train.Example``
  records into ``shards`` TFRecord files in a temp dir (removed by ``InputData.cleanup``, or at
  interpreter exit). Each element is read (plus ``io_latency_ms`` of simulated storage
  latency, a ``time.sleep`` in a ``tf.py_function`` inside each shard's reader, and
  ``open_latency_ms`` once per shard), parsed, PNG-decoded, shuffled, randomly cropped
  (pad 4, crop back) and flipped, and normalized. The crop offsets and the flip come from a
  counter-based generator keyed by (seed, epoch, example index), so the per-element and the
  vectorized maps produce bit-identical batches, and every variant computes the same loss:
  the baseline is ``naive``.
- ``artificial``: the tf.data guide's ``ArtificialDataset`` ("Better performance with the
  tf.data API"), code as it stands there: a ``from_generator`` dataset that sleeps
  ``open_latency_ms`` once and ``io_latency_ms`` per sample, and a train step that is
  ``time.sleep(train_step_ms)``. Preset ``artificial_dataset`` sets the guide's figures.
  Only ``naive``, ``prefetch`` and ``interleave`` exist there (the guide's
  ``Dataset.range(2).interleave(ArtificialDataset, ...)``, which hands each sub-dataset the
  range element as ``num_samples``, so it yields 0 + 1 samples per epoch and its loss differs).

Must not import tensorflow at module level: it is imported inside ``prepare`` (to encode PNG
and write TFRecords), ``run`` and the helpers they call, which run only in the worker.
"""
from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from profilers.errors import BadInput
from workloads import Param, Variant, VariantResult, Workload, register

if TYPE_CHECKING:
    from profilers.recorder import StepRecorder

NUM_CLASSES = 10
PAD = 4  # random crop: pad by PAD on each side, crop back to image_size
LEARNING_RATE = 0.05
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
_MOD = 2147483647  # 2**31 - 1: the counter-based generator works in int64 without overflow


@dataclass(frozen=True)
class PipelineConfig:
    """What one variant switches on. ``isolate`` turns off tf.data's own hidden fixes."""

    prefetch: bool = False
    parallel_map: bool = False
    cache: bool = False
    vectorized: bool = False
    parallel_interleave: bool = False
    isolate: bool = True
    autotune: bool = True

    def describe(self) -> str:
        parts = [("parallel interleave" if self.parallel_interleave else "sequential interleave")
                 + " over shards"]
        parts.append("parse+decode map" + (" (parallel)" if self.parallel_map else ""))
        if self.cache:
            parts.append("cache")
        parts.append("shuffle, repeat")
        if self.vectorized:
            parts.append("batch, vectorized augment map" + (" (parallel)" if self.parallel_map else ""))
        else:
            parts.append("augment map" + (" (parallel)" if self.parallel_map else "") + ", batch")
        if self.prefetch:
            parts.append("prefetch(AUTOTUNE)")
        opts = ("inject_prefetch, map_parallelization, map_and_batch_fusion, parallel_batch off"
                if self.isolate else "tf.data default optimizations")
        return " → ".join(parts) + f" [{opts}{'' if self.autotune else ', autotune off'}]"


CONFIGS: dict[str, PipelineConfig] = {
    "naive": PipelineConfig(autotune=False),
    "prefetch": PipelineConfig(prefetch=True),
    "parallel_map": PipelineConfig(parallel_map=True),
    "cache": PipelineConfig(cache=True),
    "vectorized": PipelineConfig(vectorized=True),
    "interleave": PipelineConfig(parallel_interleave=True),
    "all": PipelineConfig(prefetch=True, parallel_map=True, cache=True, vectorized=True,
                          parallel_interleave=True, isolate=False),
}

#: Variants the artificial (guide) source has: the guide's naive, prefetch and parallel interleave.
ARTIFICIAL_VARIANTS = ("naive", "prefetch", "interleave")


@dataclass
class InputData:
    """What ``prepare`` builds once per experiment: seeded weights and the TFRecord shards."""

    weights: dict[str, np.ndarray]
    shard_paths: list[str] = field(default_factory=list)
    tmpdir: str | None = None
    _finalizer: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.tmpdir is not None:
            self._finalizer = weakref.finalize(self, shutil.rmtree, self.tmpdir, True)

    def cleanup(self) -> None:
        """Delete the shards now (also done when this object dies or the interpreter exits)."""
        if self._finalizer is not None:
            self._finalizer()


class InputPipeline(Workload):
    name = "input_pipeline"
    help = (
        "tf.data pipelines feeding one small conv net (2 strided 3×3 convs, global average pool, "
        "dense 10; SGD in a tf.function): read TFRecord shards (with simulated storage latency), "
        "decode PNG, random crop/flip, normalize. Each variant switches on one tf.data fix (or "
        "`all` of them); the stall is the `input_wait` phase (time in next(iterator)), summed into "
        "`input_wait_share`. Augmentation is keyed by (seed, epoch, example), so every variant "
        "computes the same batches and the same loss: the baseline is `naive`. Preset "
        "`artificial_dataset` runs the tf.data guide's ArtificialDataset instead (variants naive, "
        "prefetch, interleave)."
    )
    params = {
        "source": Param("source", str, "tfrecord",
                        "tfrecord: synthetic PNG images in TFRecord shards, a real model; "
                        "artificial: the tf.data guide's ArtificialDataset (sleeps) and a sleep as step",
                        choices=("tfrecord", "artificial")),
        "samples": Param("samples", int, 512,
                         "images in the dataset (artificial: the ArtificialDataset's num_samples)", minimum=1),
        "batch_size": Param("batch_size", int, 32, "images per step (artificial: must be 1)", minimum=1),
        "shuffle_buffer": Param("shuffle_buffer", int, 128, "shuffle buffer, in elements", minimum=1),
        "shards": Param("shards", int, 4, "TFRecord files the images are spread over", minimum=1),
        "image_size": Param("image_size", int, 64, "image height and width, in pixels", minimum=8),
        "io_latency_ms": Param("io_latency_ms", float, 0.5,
                               "simulated storage latency per record read (time.sleep in a "
                               "tf.py_function inside each shard's reader); artificial: per sample",
                               minimum=0),
        "open_latency_ms": Param("open_latency_ms", float, 0.0,
                                 "simulated latency of opening one shard; artificial: of opening "
                                 "the file", minimum=0),
        "train_step_ms": Param("train_step_ms", float, 0.0,
                               "a time.sleep after each step (a bigger model's compute); "
                               "artificial: the whole train step", minimum=0),
        "epochs": Param("epochs", int, 3, "passes over the dataset", minimum=1),
        "warmup_steps": Param("warmup_steps", int, 3, "steps recorded but left out of statistics",
                              minimum=0),
        "seed": Param("seed", int, 0, "seed of the images, weights, shuffle and augmentation", minimum=0),
    }
    variants = {
        "naive": Variant("naive", "sequential reads, parse/decode and augment maps, batch; no prefetch "
                         "(inject_prefetch, map_parallelization, map_and_batch_fusion and autotune off, "
                         "so tf.data adds no hidden overlap)", needs_tf=True),
        "prefetch": Variant("prefetch", "naive + prefetch(AUTOTUNE) after batch", needs_tf=True),
        "parallel_map": Variant("parallel_map", "naive with num_parallel_calls=AUTOTUNE on the "
                                "parse/decode and augment maps", needs_tf=True),
        "cache": Variant("cache", "naive + cache() of the decoded images (before shuffle): epochs "
                         "after the first skip reading and decoding", needs_tf=True),
        "vectorized": Variant("vectorized", "naive, but batch before map: one parse_example + "
                              "decode + augment call per batch instead of per image", needs_tf=True),
        "interleave": Variant("interleave", "naive with the shards read by a parallel interleave "
                              "(num_parallel_calls=AUTOTUNE), hiding the storage latency", needs_tf=True),
        "all": Variant("all", "every fix: parallel interleave, parallel decode, cache, vectorized "
                       "augment, prefetch, with tf.data's default optimizations on", needs_tf=True),
    }
    baseline = "naive"
    presets = {
        "artificial_dataset": {
            "source": "artificial", "samples": 3, "epochs": 2, "batch_size": 1,
            "open_latency_ms": 30.0, "io_latency_ms": 15.0, "train_step_ms": 10.0,
            "warmup_steps": 0,
        },
    }

    # -- params ------------------------------------------------------------------------
    def resolve_params(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        values = super().resolve_params(raw)
        if values["source"] == "artificial":
            if values["batch_size"] != 1:
                raise BadInput(f"batch_size={values['batch_size']} with source=artificial.",
                               "The guide's ArtificialDataset is not batched: use batch_size=1.")
            return values
        if values["samples"] * values["epochs"] < values["batch_size"]:
            raise BadInput(
                f"samples×epochs = {values['samples'] * values['epochs']} is less than one batch "
                f"of {values['batch_size']}.", "Raise samples or epochs, or lower batch_size.")
        if values["shards"] > values["samples"]:
            raise BadInput(f"shards={values['shards']} is more than samples={values['samples']}.",
                           "Every shard needs at least one image: lower shards.")
        return values

    def steps_for(self, variant: str, params: Mapping[str, Any]) -> int:
        """Steps one variant takes (the artificial interleave yields 0 + 1 samples per epoch)."""
        if params["source"] == "artificial":
            per_epoch = sum(range(2)) if variant == "interleave" else params["samples"]
            return per_epoch * params["epochs"]
        return params["samples"] * params["epochs"] // params["batch_size"]

    def total_steps(self, params: Mapping[str, Any]) -> int:
        return self.steps_for("naive", params)

    def flops_per_step(self, params: Mapping[str, Any]) -> dict[str, float]:
        if params["source"] == "artificial":
            return {}
        b, s = params["batch_size"], params["image_size"]
        h1, h2 = -(-s // 2), -(-s // 4)
        fwd = 2.0 * b * (h1 * h1 * 27 * 16 + h2 * h2 * 144 * 32 + 32 * NUM_CLASSES)
        n_params = sum(int(np.prod(v)) for v in _weight_shapes().values())
        return {"forward": fwd, "backward": 2.0 * fwd, "optimizer_update": 2.0 * n_params}

    # -- running -----------------------------------------------------------------------
    def prepare(self, params: Mapping[str, Any]) -> InputData:
        weights = init_weights(params["seed"])
        if params["source"] == "artificial":
            return InputData(weights=weights)
        images, labels = synthetic_images(params["samples"], params["image_size"], params["seed"])
        tmpdir = tempfile.mkdtemp(prefix="sgdscope-input-pipeline-")
        data = InputData(weights=weights, tmpdir=tmpdir)
        data.shard_paths = write_shards(Path(tmpdir), images, labels, params["shards"])
        return data

    def run(self, variant: str, params: Mapping[str, Any], data: InputData,
            rec: "StepRecorder") -> VariantResult:
        self.variant(variant)
        if params["source"] == "artificial":
            if variant not in ARTIFICIAL_VARIANTS:
                raise BadInput(f"Variant {variant!r} has no ArtificialDataset pipeline in the tf.data "
                               "guide.", f"With source=artificial use: {', '.join(ARTIFICIAL_VARIANTS)}.")
            return run_artificial(variant, params, rec, self.steps_for(variant, params))
        return run_tfrecord(variant, params, data, rec, self.steps_for(variant, params))


# -- data ------------------------------------------------------------------------------
def _weight_shapes() -> dict[str, tuple[int, ...]]:
    return {"w1": (3, 3, 3, 16), "b1": (16,), "w2": (3, 3, 16, 32), "b2": (32,),
            "w3": (32, NUM_CLASSES), "b3": (NUM_CLASSES,)}


def init_weights(seed: int) -> dict[str, np.ndarray]:
    """He-normal float32 weights, zero biases, from ``seed`` (the same for every variant)."""
    rng = np.random.default_rng(seed + 1)
    out: dict[str, np.ndarray] = {}
    for name, shape in _weight_shapes().items():
        if name.startswith("b"):
            out[name] = np.zeros(shape, np.float32)
        else:
            fan_in = int(np.prod(shape[:-1]))
            out[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return out


def synthetic_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 RGB images whose colour and stripe frequency depend on their label, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, n)
    colours = rng.uniform(40, 215, (NUM_CLASSES, 3))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = np.empty((n, size, size, 3), np.uint8)
    for i, lab in enumerate(labels):
        freq = 1.0 + lab
        stripes = 30.0 * np.sin(2 * np.pi * freq * (xx * np.cos(lab) + yy * np.sin(lab)))
        pix = colours[lab][None, None, :] + stripes[..., None] + rng.normal(0, 12, (size, size, 3))
        images[i] = np.clip(pix, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def write_shards(directory: Path, images: np.ndarray, labels: np.ndarray, shards: int) -> list[str]:
    """PNG-encoded ``tf.train.Example`` records; record k goes to shard k % shards.

    A round-robin interleave over the shards (cycle_length=shards, block_length=1) therefore
    reads the records back in index order, whether it runs sequentially or in parallel.
    """
    import tensorflow as tf

    paths = [str(directory / f"images-{k:05d}-of-{shards:05d}.tfrecord") for k in range(shards)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    try:
        for k, (img, lab) in enumerate(zip(images, labels)):
            png = tf.io.encode_png(img).numpy()
            example = tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(lab)])),
                "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[k])),
            }))
            writers[k % shards].write(example.SerializeToString())
    finally:
        for w in writers:
            w.close()
    return paths


# -- the tfrecord pipeline -------------------------------------------------------------
def _sleep_op(tf: Any, seconds: float, value: Any) -> Any:
    """``value``, after a ``time.sleep(seconds)`` run by ``tf.py_function`` (simulated I/O)."""
    done = tf.py_function(lambda: (time.sleep(seconds), np.int32(0))[1], [], tf.int32)
    with tf.control_dependencies([done]):
        return tf.identity(value)


def _augment_params(tf: Any, index: Any, epoch: Any, seed: int) -> tuple[Any, Any, Any]:
    """Crop offsets (0..2·PAD) and flip bit from a counter-based generator keyed by
    (seed, epoch, index). Elementwise int64 maths: the same for a scalar or a batch."""
    h = (index * 1000003 + epoch * 7919 + (seed % 100003) * 104729 + 12345) % _MOD
    for _ in range(3):
        h = (h * 48271) % _MOD
    h1 = (h * 48271) % _MOD
    h2 = (h1 * 48271) % _MOD
    h3 = (h2 * 48271) % _MOD
    span = 2 * PAD + 1
    return (tf.cast((h1 // 64) % span, tf.int32), tf.cast((h2 // 64) % span, tf.int32),
            tf.cast((h3 // 64) % 2, tf.int32))


def _normalize(tf: Any, img: Any) -> Any:
    x = tf.cast(img, tf.float32) * (1.0 / 255.0)
    return (x - tf.constant(MEAN, tf.float32)) / tf.constant(STD, tf.float32)


def make_pipeline_fns(tf: Any, params: Mapping[str, Any]) -> dict[str, Callable[..., Any]]:
    size, samples, seed = params["image_size"], params["samples"], params["seed"]
    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "index": tf.io.FixedLenFeature([], tf.int64),
    }

    def decode(png: Any) -> Any:
        img = tf.io.decode_png(png, channels=3)
        return tf.ensure_shape(img, [size, size, 3])

    def parse_decode(record: Any) -> tuple[Any, Any, Any]:
        ex = tf.io.parse_single_example(record, features)
        return decode(ex["image"]), ex["label"], ex["index"]

    def augment_one(pos: Any, elem: tuple[Any, Any, Any]) -> tuple[Any, Any]:
        img, label, index = elem
        oy, ox, flip = _augment_params(tf, index, pos // samples, seed)
        padded = tf.pad(img, [[PAD, PAD], [PAD, PAD], [0, 0]])
        crop = tf.slice(padded, tf.stack([oy, ox, 0]), [size, size, 3])
        crop = tf.cond(flip > 0, lambda: tf.reverse(crop, axis=[1]), lambda: crop)
        return _normalize(tf, crop), label

    def augment_batch(pos: Any, imgs: Any, labels: Any, index: Any) -> tuple[Any, Any]:
        oy, ox, flip = _augment_params(tf, index, pos // samples, seed)
        padded = tf.pad(imgs, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]])
        r = tf.range(size, dtype=tf.int32)[None, :]
        rows = oy[:, None] + r
        cols = tf.where(flip[:, None] > 0, ox[:, None] + (size - 1) - r, ox[:, None] + r)
        crop = tf.gather(padded, rows, axis=1, batch_dims=1)
        crop = tf.gather(crop, cols, axis=2, batch_dims=1)
        return _normalize(tf, crop), labels

    def augment_decoded_batch(pos: Any, elem: tuple[Any, Any, Any]) -> tuple[Any, Any]:
        imgs, labels, index = elem
        return augment_batch(pos, imgs, labels, index)

    def parse_decode_augment_batch(pos: Any, records: Any) -> tuple[Any, Any]:
        ex = tf.io.parse_example(records, features)
        imgs = tf.map_fn(decode, ex["image"], fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        return augment_batch(pos, imgs, ex["label"], ex["index"])

    return {"parse_decode": parse_decode, "augment_one": augment_one,
            "augment_decoded_batch": augment_decoded_batch,
            "parse_decode_augment_batch": parse_decode_augment_batch}


def pipeline_options(tf: Any, cfg: PipelineConfig) -> Any:
    """tf.data options: deterministic order always; the isolating variants turn off every
    optimization that would add overlap or parallelism of its own (injected prefetch,
    map parallelization, the map_and_batch fusion's runner thread, parallel batch copy)."""
    options = tf.data.Options()
    options.deterministic = True
    if cfg.isolate:
        opt = options.experimental_optimization
        opt.inject_prefetch = False
        opt.map_parallelization = False
        opt.map_and_batch_fusion = False
        opt.parallel_batch = False
        opt.seq_interleave_prefetch = False
    if not cfg.autotune:
        options.autotune.enabled = False
    return options


def _parallel(calls: Any) -> dict[str, Any]:
    """``num_parallel_calls`` (and ``deterministic=True``, which only means something with it)."""
    return {} if calls is None else {"num_parallel_calls": calls, "deterministic": True}


def build_tfrecord_pipeline(tf: Any, variant: str, params: Mapping[str, Any],
                            shard_paths: list[str]) -> Any:
    cfg = CONFIGS[variant]
    autotune = tf.data.AUTOTUNE
    par = autotune if cfg.parallel_map else None
    io_s, open_s = params["io_latency_ms"] / 1e3, params["open_latency_ms"] / 1e3
    fns = make_pipeline_fns(tf, params)

    def open_shard(path: Any) -> Any:
        shard = tf.data.Dataset.from_tensors(path)
        if open_s > 0:
            shard = shard.map(lambda p: _sleep_op(tf, open_s, p))
        shard = shard.flat_map(tf.data.TFRecordDataset)
        if io_s > 0:
            shard = shard.map(lambda r: _sleep_op(tf, io_s, r))
        return shard

    ds = tf.data.Dataset.from_tensor_slices(shard_paths).interleave(
        open_shard, cycle_length=len(shard_paths), block_length=1,
        **_parallel(autotune if cfg.parallel_interleave else None))
    shuffle = dict(buffer_size=params["shuffle_buffer"], seed=params["seed"], reshuffle_each_iteration=True)
    batch = params["batch_size"]
    if cfg.vectorized and not cfg.cache:
        # Batch the serialized records, then one call per batch does parse, decode, augment.
        ds = (ds.shuffle(**shuffle).repeat(params["epochs"]).enumerate()
              .batch(batch, drop_remainder=True)
              .map(fns["parse_decode_augment_batch"], **_parallel(par)))
    else:
        ds = ds.map(fns["parse_decode"], **_parallel(par))
        if cfg.cache:
            ds = ds.cache()
        ds = ds.shuffle(**shuffle).repeat(params["epochs"]).enumerate()
        if cfg.vectorized:
            ds = (ds.batch(batch, drop_remainder=True)
                  .map(fns["augment_decoded_batch"], **_parallel(par)))
        else:
            ds = (ds.map(fns["augment_one"], **_parallel(par))
                  .batch(batch, drop_remainder=True))
    if cfg.prefetch:
        ds = ds.prefetch(autotune)
    return ds.with_options(pipeline_options(tf, cfg))


def make_train_step(tf: Any, weights: Mapping[str, np.ndarray]) -> tuple[Callable[..., Any], list[Any]]:
    """A fresh copy of the seeded weights and one SGD step as a ``tf.function``."""
    var = {k: tf.Variable(v, name=k) for k, v in weights.items()}
    order = list(var.values())

    @tf.function
    def train_step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            with tf.name_scope("forward"):
                h = tf.nn.relu(tf.nn.conv2d(x, var["w1"], 2, "SAME") + var["b1"])
                h = tf.nn.relu(tf.nn.conv2d(h, var["w2"], 2, "SAME") + var["b2"])
                logits = tf.reduce_mean(h, axis=[1, 2]) @ var["w3"] + var["b3"]
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        with tf.name_scope("backward"):
            grads = tape.gradient(loss, order)
        with tf.name_scope("optimizer_update"):
            for v, g in zip(order, grads):
                v.assign_sub(LEARNING_RATE * g)
        return loss

    return train_step, order


class _StallTally:
    """Per-step input wait and wall (ns), as measured inside the recorder's step."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup = warmup_steps
        self.waits: list[int] = []
        self.walls: list[int] = []

    def add(self, wait_ns: int, wall_ns: int) -> None:
        self.waits.append(wait_ns)
        self.walls.append(wall_ns)

    def extra(self) -> dict[str, Any]:
        waits = np.asarray(self.waits[self.warmup:], dtype=np.float64) / 1e6
        walls = np.asarray(self.walls[self.warmup:], dtype=np.float64) / 1e6
        if walls.size == 0:
            return {"input_wait_share": None, "input_wait_ms_median": None,
                    "input_wait_reason": "no steps after warm-up"}
        return {"input_wait_share": float(min(1.0, waits.sum() / walls.sum())) if walls.sum() > 0 else None,
                "input_wait_ms_median": float(np.median(waits)),
                "input_wait_ms_total": float(waits.sum()),
                "step_ms_total": float(walls.sum())}


def run_tfrecord(variant: str, params: Mapping[str, Any], data: InputData,
                 rec: "StepRecorder", n_steps: int) -> VariantResult:
    import tensorflow as tf

    if not data.shard_paths or not all(Path(p).exists() for p in data.shard_paths):
        raise BadInput("The TFRecord shards are missing (prepare() did not run, or they were cleaned up).",
                       "Call prepare() with the same params before run().")
    ds = build_tfrecord_pipeline(tf, variant, params, data.shard_paths)
    train_step, _ = make_train_step(tf, data.weights)
    extra_s = params["train_step_ms"] / 1e3
    per_epoch = params["samples"]
    batch = params["batch_size"]
    tally = _StallTally(params["warmup_steps"])
    loss: Any = None
    t_loop = time.perf_counter_ns()
    iterator = iter(ds)
    create_ms = (time.perf_counter_ns() - t_loop) / 1e6
    try:
        for i in range(n_steps):
            with rec.step(i, i * batch // per_epoch):
                t0 = time.perf_counter_ns()
                with rec.phase("input_wait"):
                    x, y = next(iterator)
                t1 = time.perf_counter_ns()
                loss = train_step(x, y)  # one tf.function call: forward/backward/update in its trace
                if extra_s > 0:
                    time.sleep(extra_s)  # simulated extra compute; no phase: it is not host overhead
                tally.add(t1 - t0, time.perf_counter_ns() - t0)
            rec.record_loss(i, loss)
    finally:
        del iterator  # stops prefetch/parallel threads before the next variant runs
    total_ms = (time.perf_counter_ns() - t_loop) / 1e6
    return VariantResult(final_loss=float(loss.numpy()), extra={
        **tally.extra(), "total_ms": total_ms, "iterator_create_ms": create_ms,
        "pipeline": CONFIGS[variant].describe()})


# -- the tf.data guide's ArtificialDataset ---------------------------------------------
def artificial_dataset_class(tf: Any, open_s: float, read_s: float) -> type:
    """The guide's ``ArtificialDataset``, code as it stands there, with its sleeps as params."""

    class ArtificialDataset(tf.data.Dataset):
        def _generator(num_samples):
            # Opening the file
            time.sleep(open_s)

            for sample_idx in range(num_samples):
                # Reading data (line, record) from the file
                time.sleep(read_s)

                yield (sample_idx,)

        def __new__(cls, num_samples=3):
            return tf.data.Dataset.from_generator(
                cls._generator,
                output_signature=tf.TensorSpec(shape=(1,), dtype=tf.int64),
                args=(num_samples,),
            )

    return ArtificialDataset


def build_artificial_pipeline(tf: Any, variant: str, params: Mapping[str, Any]) -> Any:
    cls = artificial_dataset_class(tf, params["open_latency_ms"] / 1e3, params["io_latency_ms"] / 1e3)
    if variant == "naive":
        options = tf.data.Options()
        options.experimental_optimization.inject_prefetch = False
        return cls(params["samples"]).with_options(options)
    if variant == "prefetch":
        return cls(params["samples"]).prefetch(tf.data.AUTOTUNE)
    if variant == "interleave":  # the guide's parallel interleave, as it stands
        return tf.data.Dataset.range(2).interleave(cls, num_parallel_calls=tf.data.AUTOTUNE)
    raise BadInput(f"No ArtificialDataset pipeline for variant {variant!r}.",
                   f"Use one of: {', '.join(ARTIFICIAL_VARIANTS)}.")


def run_artificial(variant: str, params: Mapping[str, Any], rec: "StepRecorder",
                   n_steps: int) -> VariantResult:
    """The guide's ``benchmark``: a new iterator per epoch, ``time.sleep`` as the train step.

    The loss is a one-weight NumPy fit of sample id → id + 1, updated after each step; it only
    gives the loss check something to compare (µs next to the 10 ms sleep).
    """
    import tensorflow as tf

    ds = build_artificial_pipeline(tf, variant, params)
    per_epoch = n_steps // params["epochs"]
    step_s = params["train_step_ms"] / 1e3
    tally = _StallTally(params["warmup_steps"])
    w, loss, i = 0.0, float("nan"), 0
    epoch_end_ms: list[float] = []
    create_ms: list[float] = []
    t_loop = time.perf_counter_ns()
    for epoch in range(params["epochs"]):
        t_iter = time.perf_counter_ns()
        iterator = iter(ds)
        create_ms.append((time.perf_counter_ns() - t_iter) / 1e6)
        for _ in range(per_epoch):
            with rec.step(i, epoch):
                t0 = time.perf_counter_ns()
                with rec.phase("input_wait"):
                    sample = next(iterator)
                t1 = time.perf_counter_ns()
                time.sleep(step_s)  # Performing a training step (the guide's simulated step)
                x = float(sample.numpy()[0])
                loss = (w * x - (x + 1.0)) ** 2
                w -= 0.1 * 2.0 * (w * x - (x + 1.0)) * x
                tally.add(t1 - t0, time.perf_counter_ns() - t0)
            rec.record_loss(i, loss)
            i += 1
        t_end = time.perf_counter_ns()
        extra_elem = next(iterator, None)  # the for-loop's last call, which ends the epoch
        epoch_end_ms.append((time.perf_counter_ns() - t_end) / 1e6)
        if extra_elem is not None:
            raise RuntimeError(f"ArtificialDataset ({variant}) yielded more than {per_epoch} samples "
                               "in an epoch.")
        del iterator
    total_ms = (time.perf_counter_ns() - t_loop) / 1e6
    return VariantResult(final_loss=float(loss), extra={
        **tally.extra(), "total_ms": total_ms, "epoch_end_ms": epoch_end_ms,
        "iterator_create_ms": create_ms,
        "pipeline": f"tf.data guide ArtificialDataset, {variant}"})


register(InputPipeline())
