#!/usr/bin/python3
"""Train a torchvision architecture (default resnet18) on synthetic concepts and export it.

Task: the same 12-way classification as models/train_bundled.py -- the
dominant (largest visible) shape's kind x fill texture, e.g. "circle-striped",
on images from make_concepts.render_sample rendered in memory from the same
seed streams -- but with a standard torchvision network (random init,
num_classes=12) instead of TinyCNN. This gives cnnviz a deep, BatchNorm- and
residual-laden model whose units learned the concepts of the make_concepts
dataset, so network dissection, comparisons with TinyCNN and the per-method
commands can be run on a "real" architecture without internet or pretrained
weights.

Data, preprocessing and recipe are train_bundled's (its render_split,
channel_stats, normalize, accuracy, steps_per_epoch and WEIGHT_DECAY are
imported, not copied): uint8 images normalized with the training set's channel
mean and std (recorded in the sidecar), Adam with weight decay and a cosine
learning-rate schedule, batches in a seeded random order. Only the loop is
local, so it can report validation accuracy and time after every epoch.
Images are rendered at --size (default 96, train_bundled's size; at 96 they
are exactly train_bundled's images for the same --seed and --count).

The defaults (4 epochs of 4800 images, batch 64, lr 0.001: 300 optimizer
steps) keep a run with --threads 1 under ~10 minutes on a 2-core machine
(resnet18 at 96 x 96: ~1.5 s per step) while reaching a validation accuracy
well above chance (1/12); resnet18 needs more steps than TinyCNN to match its
accuracy, so raise --epochs/--count when time allows.

Outputs (--out PATH.pt), loadable by cnnviz like models/export_torchvision.py's:
TorchScript PATH.pt (torch.jit.script of the eval model, torch.jit.trace if
scripting fails; BatchNorm kept as is), sidecar PATH.json ("cnnviz-sidecar-1":
input size, range [0, 1], training mean/std, labels file, the architecture's
layer aliases from export_torchvision.aliases_for, e.g. resnet18 conv4_x ->
layer3, and notes with arch, steps, epochs, validation accuracy and seed) and
PATH_labels.txt (the 12 class names, in logit order). The saved file is
reloaded and checked against the eager model's logits.

Reproducible from --seed on a given machine and thread count: data come from
numpy Generators seeded with [seed, stream], weights and batch order from
torch.manual_seed(seed).

Usage: /usr/bin/python3 models/train_torchvision.py --out PATH.pt [--arch resnet18]
       [--seed 0] [--epochs 4] [--count 4800] [--val-count 1000] [--threads 1]
       [--batch-size 64] [--lr 0.001] [--size 96]
"""

import os

# libgomp reads this once, at import time of torch: idle OpenMP threads sleep
# instead of spinning, which otherwise stalls a 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import export_torchvision  # noqa: E402
import train_bundled  # noqa: E402

DEFAULT_ARCH = "resnet18"
EPOCHS = 4
COUNT = 4800  # 75 batches of 64
VAL_COUNT = 1000
THREADS = 1
BATCH_SIZE = train_bundled.BATCH_SIZE  # 64
LEARNING_RATE = 1e-3
CLASSES = train_bundled.CLASSES
# Architectures whose constructors need extra arguments for random init without
# auxiliary heads (as in export_torchvision.build_torchvision).
NO_AUX = ("googlenet", "inception_v3")


def build_model(arch, size):
    """Randomly initialized torchvision `arch` with len(CLASSES) outputs; UserError if unusable."""
    if arch not in export_torchvision.torchvision_archs():
        raise _cli.UserError(f"unknown --arch {arch!r}; it must be a torchvision classification "
                             f"model, e.g. {', '.join(export_torchvision.torchvision_archs()[:6])}")
    kwargs = {"num_classes": len(CLASSES)}
    if arch in NO_AUX:
        kwargs.update(aux_logits=False, init_weights=True, transform_input=False)
    if arch.startswith("vit_"):
        kwargs["image_size"] = size
    try:
        model = torchvision.models.get_model(arch, weights=None, **kwargs)
        model.eval()
        with torch.no_grad():
            output = export_torchvision.logits_of(model(torch.zeros(2, 3, size, size)))
    except (TypeError, ValueError, RuntimeError, AssertionError) as error:
        raise _cli.UserError(f"cannot use {arch} with num_classes={len(CLASSES)} at "
                             f"{size} x {size}: {' '.join(str(error).split())}") from None
    if tuple(output.shape) != (2, len(CLASSES)):
        raise _cli.UserError(f"{arch} gives output of shape {tuple(output.shape)}, not logits")
    return model


def log(message):
    """One progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def train(model, images, labels, val_x, val_labels, args, mean, std, started):
    """train_bundled's recipe (Adam, weight decay, cosine schedule, seeded batch order).

    `images` are uint8 and normalized per batch (keeps memory at 1 byte per
    value). After each epoch logs the mean training loss, the validation
    accuracy and the elapsed time. Returns the number of optimizer steps.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr,
                                 weight_decay=train_bundled.WEIGHT_DECAY)
    steps = args.epochs * train_bundled.steps_per_epoch(len(labels), args.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    order_generator = torch.Generator().manual_seed(args.seed)
    step = 0
    for epoch in range(args.epochs):
        model.train()
        epoch_started = time.time()
        order, total = torch.randperm(len(labels), generator=order_generator), 0.0
        for start in range(0, len(labels), args.batch_size):
            batch = order[start:start + args.batch_size]
            inputs = train_bundled.normalize(images[batch], mean, std)
            inputs = inputs.contiguous(memory_format=torch.channels_last)
            logits = export_torchvision.logits_of(model(inputs))
            loss = nn.functional.cross_entropy(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
            step += 1
        train_seconds = time.time() - epoch_started
        val_accuracy = train_bundled.accuracy(model, val_x, val_labels)
        log(f"epoch {epoch + 1}/{args.epochs}: train loss {total / len(labels):.4f}, "
            f"val accuracy {val_accuracy:.4f}, {train_seconds:.0f} s "
            f"({train_seconds / train_bundled.steps_per_epoch(len(labels), args.batch_size):.2f} s/step), "
            f"total {time.time() - started:.0f} s")
    model.eval()
    return steps


def export(model, out_path, size, seed):
    """Script (else trace) the eval model to out_path and check the reload; returns the mode."""
    model.eval()
    generator = torch.Generator().manual_seed(seed + export_torchvision.TRACE_EXAMPLE_SEED_OFFSET)
    example = torch.randn(2, 3, size, size, generator=generator)
    with torch.no_grad():
        expected = export_torchvision.logits_of(model(example))
    try:
        export_torchvision.export(model, "script", example, out_path)
        mode = "script"
    except RuntimeError as error:  # torch.jit.frontend errors are RuntimeErrors
        log(f"torch.jit.script failed ({str(error).splitlines()[0] if str(error) else error}); "
            f"tracing instead")
        export_torchvision.export(model, "trace", example, out_path)
        mode = "trace"
    difference = export_torchvision.check_export(out_path, example, expected)
    return mode, difference


def parse_args(argv=None):
    """Command-line arguments (see --help)."""
    parser = _cli.ArgumentParser(
        prog="train_torchvision.py",
        description="Train a randomly initialized torchvision model (shape x texture of the "
                    "dominant shape, 12 classes) on synthetic concept images and export "
                    "TorchScript + sidecar + labels.")
    parser.add_argument("--arch", default=DEFAULT_ARCH,
                        help=f"torchvision classification model name taking num_classes "
                             f"(default {DEFAULT_ARCH})")
    parser.add_argument("--out", required=True,
                        help="TorchScript output PATH.pt; PATH.json and PATH_labels.txt are "
                             "written next to it")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--epochs", type=int, default=EPOCHS,
                        help=f"training epochs (default {EPOCHS})")
    parser.add_argument("--count", type=int, default=COUNT,
                        help=f"training images (default {COUNT})")
    parser.add_argument("--val-count", type=int, default=VAL_COUNT,
                        help=f"validation images (default {VAL_COUNT})")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help=f"torch CPU threads (default {THREADS})")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"training batch size (default {BATCH_SIZE})")
    parser.add_argument("--lr", type=float, default=LEARNING_RATE,
                        help=f"Adam learning rate, cosine-annealed to 0 (default {LEARNING_RATE})")
    parser.add_argument("--size", type=int, default=train_bundled.INPUT_SIZE,
                        help=f"image side in pixels, rendered and in the sidecar "
                             f"(default {train_bundled.INPUT_SIZE})")
    args = parser.parse_args(argv)
    for name in ("epochs", "count", "val_count", "threads", "batch_size", "size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.lr > 0:
        parser.error("--lr must be positive")
    if not args.out.endswith(".pt"):
        parser.error("--out must end in .pt")
    return args


def main(argv=None):
    """Render data, train, report validation accuracy, export with sidecar and labels."""
    args = parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()
    # Built first so that a bad --arch fails before rendering; channels_last runs
    # the oneDNN convolutions faster here (as in train_bundled).
    model = build_model(args.arch, args.size).to(memory_format=torch.channels_last)
    train_images, train_labels = train_bundled.render_split(args.seed, train_bundled.TRAIN_STREAM, args.count,
                                                            args.size)
    val_images, val_labels = train_bundled.render_split(args.seed, train_bundled.VAL_STREAM, args.val_count,
                                                        args.size)
    mean, std = train_bundled.channel_stats(train_images)
    val_x = train_bundled.normalize(val_images, mean, std)
    log(f"{args.arch}: rendered {args.count}+{args.val_count} images of {args.size} px in "
        f"{time.time() - started:.1f} s; mean {np.round(mean, 4).tolist()} "
        f"std {np.round(std, 4).tolist()}")
    steps = train(model, train_images, train_labels, val_x, val_labels, args, mean, std, started)
    val_accuracy = train_bundled.accuracy(model, val_x, val_labels)
    elapsed = time.time() - started
    log(f"val accuracy {val_accuracy:.4f} ({args.val_count} images, chance "
        f"{1 / len(CLASSES):.4f}); {steps} steps; total {elapsed:.0f} s")
    model = model.to(memory_format=torch.contiguous_format)
    mode, difference = export(model, args.out, args.size, args.seed)
    command = (f"models/train_torchvision.py --arch {args.arch} --seed {args.seed} "
               f"--epochs {args.epochs} --count {args.count} --val-count {args.val_count} "
               f"--batch-size {args.batch_size} --lr {args.lr:g} --size {args.size} "
               f"--threads {args.threads}")
    notes = (f"{args.arch} (torchvision {torchvision.__version__}, random init, num_classes "
             f"{len(CLASSES)}) trained by {command}: 12 classes = dominant shape x texture on "
             f"make_concepts.render_sample images, Adam lr {args.lr:g} cosine, weight decay "
             f"{train_bundled.WEIGHT_DECAY:g}, batch {args.batch_size}, {steps} steps "
             f"({args.epochs} epochs of {args.count} images), seed {args.seed}. "
             f"mean/std = channel statistics of the training images; BatchNorm not folded. "
             f"Val accuracy {val_accuracy:.4f} on {args.val_count} images (chance "
             f"{1 / len(CLASSES):.4f}). Exported with torch.jit.{mode} (torch "
             f"{torch.__version__}).")
    export_torchvision.write_sidecar(args.out, args.arch, args.size, {"mean": mean, "std": std},
                                     list(CLASSES), notes,
                                     export_torchvision.aliases_for(args.arch, model))
    log(f"wrote {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB, torch.jit.{mode}, "
        f"reloaded max|diff| {difference:.2g}), {os.path.splitext(args.out)[0]}.json, "
        f"{os.path.splitext(args.out)[0]}_labels.txt")
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run_main(main, "train_torchvision.py"))
