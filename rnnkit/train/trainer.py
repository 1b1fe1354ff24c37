"""One Trainer for every task.

A task plugs in through four methods (no subclassing of the Trainer):

- ``train_batches(epoch) -> Sequence``   the epoch's batches, the same for the same epoch;
- ``train_step(model, batch, state) -> (loss, n_tokens, state)``   mean loss of one batch and
  the recurrent state to carry into the next batch (detached; None for sentence tasks);
- ``evaluate(model, split) -> dict``   metrics with at least ``"loss"`` (lower is better);
- ``meta() -> dict``   JSON facts a checkpoint must carry (vocabulary, model config, ...).

A task may also set ``monitor = (metric, "min" | "max")``: the validation metric that picks
the best checkpoint, drives early stopping and the plateau schedule (default ``("loss", "min")``).

Under ``torchrun`` with several processes (``rnnkit.train.distributed``) the model is wrapped in
DistributedDataParallel and the task needs one more method:

- ``shard(batch, rank, world) -> part | None``   rank's part of a global batch (None: nothing
  for this rank, e.g. the last short batch of an epoch); a carried state is cut alongside with
  ``distributed.split_state`` (batch in dimension 1), so the part of a batch of B streams must
  be the columns ``distributed.shard_slice(B, rank, world)``.

Each rank runs ``train_step`` on its part, and its mean loss is scaled by
``n_tokens * world / global n_tokens``: DDP averages the gradients, so the update is the one
of the global batch's mean loss in one process.  ``batch_size`` is therefore the global batch.
Rank 0 evaluates, logs and writes checkpoints; the others wait for its validation metrics, so
every decision (best, early stop, schedule) is the same on all ranks.

The Trainer owns the loop: optimizer and schedule, gradient clipping, truncated BPTT state
carry across batches, evaluation each epoch, early stopping, metrics (CSV, TensorBoard), a
progress bar, checkpoints (atomic, resumable to the same losses), signals and NaN handling.

Signals: while ``fit`` runs (in the main thread), SIGINT (Ctrl-C) and SIGTERM (what schedulers
and ``docker stop`` send) only ask training to stop.  The loop stops at the next safe point
(after the optimizer step in progress, or after an epoch's validation and checkpoints), saves
a checkpoint and returns ``status`` "interrupted" with ``signal`` naming the first signal; a
checkpoint being written is never cut short, further signals are ignored until ``fit``
returns, and the previous handlers are restored then.  With several processes the ranks agree
on the step to stop at (any rank's signal stops all of them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from rnnkit.errors import CheckpointError, NonFiniteInput, TrainingDiverged
from rnnkit.train import distributed
from rnnkit.train.callbacks import Callback
from rnnkit.train.checkpoint import (
    check_writable,
    copy_checkpoint,
    load_weights,
    read_state,
    remove_leftovers,
    resolve_checkpoint,
    save_checkpoint,
)
from rnnkit.train.config import TrainConfig
from rnnkit.train.diagnostics import DiagnosticsCallback
from rnnkit.train.metrics_log import MetricsLog

logger = logging.getLogger(__name__)

STOP_SIGNALS = ("SIGINT", "SIGTERM")  # what stops training gracefully while fit runs
BAR_INTERVAL_NOT_TTY = 60.0  # seconds between progress-bar updates when stderr is a file or pipe


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and PyTorch; optionally make PyTorch refuse nondeterministic ops."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        why = (f"this PyTorch ({torch.__version__}) is built without CUDA" if torch.version.cuda is None
               else "no CUDA device is visible (check the driver and CUDA_VISIBLE_DEVICES)")
        raise ValueError(f"device 'cuda' was asked for but CUDA is not available here: {why}; "
                         "use --device cpu or auto")
    return torch.device(name)


def autocast_dtype(device: torch.device, bf16: bool) -> Optional[torch.dtype]:
    """The dtype the training steps autocast to: bfloat16 on CUDA when ``bf16`` is set, else
    None (no autocast; the CPU trains in float32).  Only the forward of a training step runs
    under it: the weights, optimizer, checkpoints and carried state stay float32, and
    validation and the predictors run in float32."""
    return torch.bfloat16 if bf16 and device.type == "cuda" else None


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _rank_seed(seed: int, rank: int, step: int) -> int:
    """A seed of its own for each rank (and resume step) of a multi-process run."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def _state_to(state, device: torch.device, dtype: Optional[torch.dtype] = None):
    """A carried state (tensor, tuple or list of tensors, None) on ``device``, its floating
    tensors in ``dtype`` when given; lists become tuples."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(_state_to(s, device, dtype) for s in state)
    if dtype is not None and state.is_floating_point():
        return state.to(device, dtype)
    return state.to(device)


def _parameter_dtype(model: torch.nn.Module) -> Optional[torch.dtype]:
    """The dtype of the model's first floating-point parameter (None if it has none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[str], None]) -> Iterator[bool]:
    """While the block runs, SIGINT and SIGTERM call ``request_stop(name)`` instead of raising
    KeyboardInterrupt or ending the process; the previous handlers are restored afterwards.

    Only in the main thread (Python delivers signals there, and only it may set handlers); a
    signal that was ignored (SIG_IGN, e.g. SIGINT of a background job) or whose handler was
    set outside Python is left alone.  Yields whether any handler was installed."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        def handler(signum, frame) -> None:  # only a flag: safe at any point, even inside a write
            request_stop(signal.Signals(signum).name)

        for name in STOP_SIGNALS:
            signum = getattr(signal, name, None)
            old = signal.getsignal(signum) if signum is not None else None
            if old is None or old is signal.SIG_IGN:
                continue
            try:
                signal.signal(signum, handler)
            except (ValueError, OSError):  # not the main interpreter, or a platform without it
                continue
            previous[signum] = old
    try:
        yield bool(previous)
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _is_terminal(stream) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Trainer:
    """Runs a task's training loop in ``run_dir`` (metrics.csv, config, checkpoints/)."""

    def __init__(self, model: torch.nn.Module, task: Any, cfg: TrainConfig, run_dir: str | Path,
                 record: Optional[dict] = None, callbacks: Sequence[Callback] = ()) -> None:
        self.cfg = cfg.validate()
        self.task = task
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.is_main = self.rank == 0
        self.device = distributed.init(pick_device(cfg.device))
        self.model = model.to(self.device)  # the plain module: evaluation, checkpoints, callbacks
        if self.world > 1 and not callable(getattr(task, "shard", None)):
            raise TypeError(f"{type(task).__name__} has no shard(batch, rank, world) method, so it cannot "
                            f"train on {self.world} processes")
        if self.world > 1 and self.rank > 0:  # dropout and the like: a random stream per rank
            seed_everything(_rank_seed(cfg.seed, self.rank, 0))
        self.train_model = distributed.wrap(self.model, self.device)  # what train_step runs
        if self.world > 1:
            self._check_same_task()
        self.run_dir = Path(run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        # An unwritable folder or a full disk is reported now, not after the first epoch.
        if self.is_main:  # the only writer
            check_writable(self.ckpt_root, self._checkpoint_bytes())
        self.record = record or {}
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()
        self.step = 0
        self.epoch = 0
        self.batch_index = 0
        self.state = None
        self.best = math.inf
        self.bad_epochs = 0
        self.history: list[dict] = []
        self.callbacks = list(callbacks)
        self.should_stop = False  # a callback sets it to end training after this validation
        self.stop_signal: Optional[str] = None  # the first SIGINT/SIGTERM received while fit runs
        self._saved_step: Optional[int] = None  # the step of the newest checkpoint this Trainer wrote or read
        if cfg.diagnostics and not any(isinstance(c, DiagnosticsCallback) for c in self.callbacks):
            self.callbacks.append(DiagnosticsCallback(every=cfg.diagnostics))

    def _check_same_task(self) -> None:
        """Every rank must have built the same task (vocabulary, configuration): DDP checks the
        weights' shapes, not what the ids mean."""
        meta = json.dumps(self.task.meta(), sort_keys=True, default=str)
        digests = distributed.all_gather(hashlib.sha256(meta.encode()).hexdigest())
        if len(set(digests)) > 1:
            differ = [r for r, d in enumerate(digests) if d != digests[0]]
            raise RuntimeError(f"ranks {differ} built a different task than rank 0 (vocabulary, data or "
                               "configuration differ): every process must see the same data and settings")

    def _call(self, event: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    # ------------------------------------------------------------------------------ set-up
    def _checkpoint_bytes(self) -> int:
        """About the size of one checkpoint: the weights, the optimizer's per-weight tensors
        (two moments for Adam/AdamW, one momentum buffer for SGD) and a megabyte of the rest."""
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        per_weight = {"sgd": 1 if self.cfg.momentum else 0}.get(self.cfg.optimizer, 2)
        return weights * (1 + per_weight) + 2**20

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg, params = self.cfg, self.model.parameters()
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _make_scheduler(self):
        cfg = self.cfg
        if cfg.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=cfg.lr_decay, patience=cfg.plateau_patience
            )
        if cfg.schedule == "cosine":
            total = cfg.max_steps or cfg.epochs * max(1, len(self.task.train_batches(0)))
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total)
        return None

    def _epoch_lr(self) -> None:
        """The "step" schedule of Zaremba et al.: constant, then decayed once per epoch."""
        if self.cfg.schedule == "step":
            factor = self.cfg.lr_decay ** max(0, self.epoch + 1 - self.cfg.decay_start)
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.lr * factor

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------------- checkpoints
    def save(self, name: Optional[str] = None, gather: bool = True) -> Optional[Path]:
        """Write a checkpoint of the whole job (rank 0 writes; returns None on other ranks).

        With several processes every rank must call it (``gather``): the carried state is put
        together from the ranks' blocks and every rank's RNG streams are kept.  ``gather=False``
        (Ctrl-C, when the ranks are not in step) saves rank 0's view without a carried state."""
        rng, carry, extra = _rng_state(), self.state, {}
        if self.world > 1:
            if gather:
                parts = distributed.all_gather((distributed.to_cpu(self.state), rng))
                carry = distributed.join_states([c for c, _ in parts])
                extra["rng_ranks"] = [r for _, r in parts[1:]]
            else:
                carry = None
            extra["world_size"] = self.world
        if not self.is_main:
            self._saved_step = self.step
            return None
        state = {
            "step": self.step, "epoch": self.epoch, "batch_index": self.batch_index,
            "best": self.best if math.isfinite(self.best) else None, "bad_epochs": self.bad_epochs,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": rng,
            "carry": carry,
            "train_config": asdict(self.cfg),
            "task": self.task.meta(),
            "record": self.record,
            **extra,
        }
        path = save_checkpoint(self.ckpt_root, name or f"step_{self.step:08d}", self.model, state)
        self._saved_step = self.step
        return path

    def resume(self, path: Optional[str | Path] = None) -> Path:
        """Continue from a checkpoint (default: this run's last one): weights, optimizer,
        schedule, RNG streams, position in the epoch and the carried recurrent state.

        The checkpoint may come from a run with another number of processes: the carried
        state is the global one, cut into this rank's block.  RNG streams: rank 0 takes the
        saved rank-0 streams; rank r > 0 takes the saved streams of rank r when the run had
        that many processes, else a fresh stream seeded by (seed, r, step)."""
        if path is None and self.is_main:
            remove_leftovers(self.ckpt_root)  # of a killed run; rank 0 is now its only writer
        if self.world > 1:
            distributed.barrier()  # the others read the checkpoint only after rank 0 tidied
        where = resolve_checkpoint(path or self.ckpt_root)
        state = read_state(where)
        load_weights(self.model, where, self.device)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state["scheduler"] is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            self.step, self.epoch, self.batch_index = state["step"], state["epoch"], state["batch_index"]
            others = state.get("rng_ranks", [])
            if self.rank == 0:
                _set_rng_state(state["rng"])
            elif self.rank - 1 < len(others):
                _set_rng_state(others[self.rank - 1])
            else:  # the run had fewer processes: a new stream for this rank
                seed_everything(_rank_seed(self.cfg.seed, self.rank, self.step))
            self.best = state["best"] if state["best"] is not None else math.inf
            self.bad_epochs = state["bad_epochs"]
            carry = state["carry"]
            if self.world > 1:
                carry = distributed.split_state(carry, self.rank, self.world)
            # in the weights' dtype: a carry saved in bfloat16 (under autocast, before it was
            # kept in float32) would be refused by the layers outside autocast
            carry = _state_to(carry, self.device, _parameter_dtype(self.model))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{where}: the checkpoint does not fit this run "
                                  f"({type(exc).__name__}: {exc})") from None
        self.state = carry
        self._saved_step = self.step
        return where

    # ---------------------------------------------------------------------------- training
    def _train_step(self, batch) -> tuple[float, int]:
        """One optimizer step on a global batch; returns its mean loss and its token count."""
        self.train_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self._call("on_step_start", batch)
        part, idle = batch, False
        if self.world > 1:
            part = self.task.shard(batch, self.rank, self.world)
            if part is None:  # nothing for this rank: run rank 0's part with weight 0, as DDP
                part, idle = self.task.shard(batch, 0, self.world), True  # needs every rank's backward
        low = autocast_dtype(self.device, self.cfg.bf16)
        try:
            with contextlib.nullcontext() if low is None else torch.autocast(self.device.type, dtype=low):
                loss, n_tokens, state = self.task.train_step(self.train_model, part, self.state)
        except NonFiniteInput as exc:  # NaN/inf weights upstream of a recurrent layer
            raise self._diverged(f"a recurrent layer received non-finite values ({exc})") from None
        if self.world > 1:
            if idle:
                n_tokens, state = 0, self.state
            # global mean = sum over ranks of loss_r * n_r / N; DDP averages the gradients of
            # loss_r * n_r * world / N over the ranks, which is the gradient of that mean
            total, n_total = distributed.all_reduce_sum([float(loss.detach()) * n_tokens, n_tokens])
            loss = loss * (n_tokens * self.world / n_total)
            value, n_tokens = total / n_total, int(n_total)
        else:
            value = float(loss.detach())
        if not math.isfinite(value):
            raise self._diverged(f"loss is {value}")
        loss.backward()
        self._call("on_after_backward")
        if self.cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.optimizer.step()
        if isinstance(self.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
            self.scheduler.step()
        if low is not None:
            # under autocast the layers return their final states in bfloat16 (as torch.nn's do);
            # the carry goes on in the weights' dtype, so that the next batch starts from full
            # precision and a checkpoint saves it so (resumable with or without autocast)
            state = _state_to(state, self.device, _parameter_dtype(self.model))
        self.state = state
        return value, n_tokens

    def _diverged(self, what: str) -> TrainingDiverged:
        last = self.ckpt_root / "last"
        where = (self.ckpt_root / last.read_text().strip()) if last.is_file() else "none yet"
        return TrainingDiverged(
            f"{what} at step {self.step + 1} (epoch {self.epoch + 1}); training stopped, "
            f"the last good checkpoint is {where}"
        )

    def _monitor(self) -> tuple[str, str]:
        key, mode = getattr(self.task, "monitor", ("loss", "min"))
        if mode not in ("min", "max"):
            raise ValueError(f"a task's monitor mode must be 'min' or 'max', got {mode!r}")
        return key, mode

    def _monitored(self, valid: dict) -> float:
        """The monitored validation metric as a number to minimize."""
        key, mode = self._monitor()
        if key not in valid:
            raise KeyError(f"the task monitors {key!r} but its evaluate() returned only {sorted(valid)}")
        return -float(valid[key]) if mode == "max" else float(valid[key])

    def _validate(self) -> dict:
        """Validation metrics: rank 0 evaluates the plain model, the other ranks get its numbers."""
        valid = self.task.evaluate(self.model, "valid") if self.is_main else None
        return distributed.broadcast(valid)

    def _request_stop(self, name: str) -> None:
        """The signal handler's whole work: remember the first signal (later ones change nothing)."""
        if self.stop_signal is None:
            self.stop_signal = name

    def _stop_requested(self) -> bool:
        """Whether a signal asked training to stop.  With several processes every rank calls
        this at the same points and they agree (any rank's signal stops all), so all of them
        stop at the same step and can save together."""
        asked = float(self.stop_signal is not None)
        return distributed.all_reduce_sum([asked])[0] > 0 if self.world > 1 else asked > 0

    def _validate_and_save(self, log: Optional[MetricsLog], epoch_end: bool) -> dict:
        """Validate, log, save a checkpoint and copy it to ``best`` when the monitored metric
        improved.  At an epoch's end (``epoch_end``) also count the epoch for early stopping and
        step the plateau schedule; at ``max_steps`` (mid-epoch) only ``best`` is updated, and the
        RNG streams are left as they were, so that a resumed run continues as if never stopped."""
        rng = None if epoch_end else _rng_state()
        valid = self._validate()
        if rng is not None:
            _set_rng_state(rng)
        if log is not None:
            log.eval(self.epoch + 1, self.step, "valid", valid)
        self._call("on_validation_end", valid)
        self.should_stop = distributed.broadcast(self.should_stop)  # rank 0's callbacks decide
        if self.cfg.progress and self.is_main:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in valid.items())
            where = f"epoch {self.epoch + 1}/{self.cfg.epochs}"
            where = where if epoch_end else f"max_steps reached in {where}"
            logger.info(f"{where} (step {self.step}): valid {shown}")
        score = self._monitored(valid)
        improved = score < self.best
        if improved:
            self.best = score
        if epoch_end:
            self.epoch += 1
            self.batch_index = 0
            self.bad_epochs = 0 if improved else self.bad_epochs + 1
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(score)
        saved = self.save()
        if improved and saved is not None:
            copy_checkpoint(self.ckpt_root, saved.name, "best")
        return valid

    def fit(self) -> dict:
        """Train until the epochs, ``max_steps`` or early stopping end it, or SIGINT/SIGTERM
        (see the module's docstring).  Returns {"status": ..., "step": ..., "epoch": ...,
        "best": ..., "valid": last validation metrics, "signal": "SIGINT" | "SIGTERM" | None}."""
        self.stop_signal = None
        with stop_on_signals(self._request_stop):
            return self._fit()

    def _fit(self) -> dict:
        from tqdm import tqdm

        cfg = self.cfg
        log = MetricsLog(self.run_dir) if self.is_main else None
        status, valid = "finished", None
        # Redirected to a file or pipe, a bar would write an update every 0.1 s: a line a step.
        bar_interval = 0.1 if _is_terminal(sys.stderr) else BAR_INTERVAL_NOT_TTY
        self._call("on_fit_start")
        try:
            while self.epoch < cfg.epochs:
                if self._stop_requested():  # arrived during the last validation or before the first step
                    status = "interrupted"
                    break
                if cfg.max_steps and self.step >= cfg.max_steps:  # resumed at the limit: nothing to do
                    status = "max_steps"
                    break
                self._epoch_lr()
                batches = self.task.train_batches(self.epoch)
                if self.batch_index == 0:
                    self.state = None
                bar = tqdm(total=len(batches), initial=self.batch_index, disable=not (cfg.progress and self.is_main),
                           desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="batch", leave=True,
                           dynamic_ncols=True, mininterval=bar_interval)
                window_tokens, window_start = 0, time.perf_counter()
                while self.batch_index < len(batches):
                    loss, n_tokens = self._train_step(batches[self.batch_index])
                    self.batch_index += 1
                    self.step += 1
                    window_tokens += n_tokens
                    elapsed = time.perf_counter() - window_start
                    speed = window_tokens / elapsed if elapsed > 0 else 0.0
                    self._call("on_step_end", loss)
                    # no refresh of its own: the bar redraws at most every mininterval
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:,.0f}", lr=f"{self.lr:.3g}", refresh=False)
                    bar.update(1)
                    self.history.append({"step": self.step, "loss": loss})
                    if self.step % cfg.log_every == 0:
                        if log is not None:
                            log.step(self.epoch + 1, self.step, loss, self.lr, speed)
                        window_tokens, window_start = 0, time.perf_counter()
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self.save()
                    if self._stop_requested():
                        status = "interrupted"
                        break
                    if cfg.max_steps and self.step >= cfg.max_steps:
                        status = "max_steps"
                        break
                bar.close()
                if status == "interrupted":
                    break
                if status == "max_steps" and self.batch_index < len(batches):  # mid-epoch: validate here
                    valid = self._validate_and_save(log, epoch_end=False)  # too, so best and the log hold it
                    break
                valid = self._validate_and_save(log, epoch_end=True)
                if status == "max_steps":
                    break
                if cfg.early_stop and self.bad_epochs >= cfg.early_stop:
                    status = "early_stopped"
                    break
                if self.should_stop:
                    status = "stopped"
                    break
            if status == "interrupted":
                if self.is_main:
                    logger.info(f"{self.stop_signal or 'a signal'}: training stopped at step {self.step}"
                                + ("" if self._saved_step == self.step else "; saving a checkpoint ..."))
                if self._saved_step != self.step:
                    self.save()  # every rank stopped at this step: the full (gathered) checkpoint
            distributed.barrier()  # rank 0's checkpoints are complete when fit returns on any rank
        except KeyboardInterrupt:  # raised by the task's code, or where no handler could be installed
            status = "interrupted"
            if cfg.progress and self.is_main:
                logger.info(f"\ninterrupted at step {self.step}; saving a checkpoint ...")
            self.save(gather=False)  # no collectives: the other ranks may be anywhere
        finally:
            if log is not None:
                log.close()
            best = None
            if math.isfinite(self.best):
                best = -self.best if self._monitor()[1] == "max" else self.best
            summary = {"status": status, "step": self.step, "epoch": self.epoch, "best": best, "valid": valid,
                       "signal": self.stop_signal if status == "interrupted" else None}
            self._call("on_fit_end", summary)
        return summary
