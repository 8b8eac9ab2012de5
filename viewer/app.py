"""The viewer's GUI on a viser server: a dataset browser with a sample in 3D over time, or a
reconstruction played as splats.

Every value the browser sends is a choice among options the server made (a dropdown label, a slider
position, a button press); labels are looked up in the server's own tables, so nothing the browser
sends becomes a path, a URL or an object key. Work runs in viser's callback threads; one lock keeps
scene updates in order, and a generation counter drops the result of a sample that was replaced while
it loaded.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from contracts import layout
from viewer import samples as sl
from viewer.controls import TimeControls
from viewer.controls import md_escape as _md_escape
from viewer.dataset import Dataset, SampleReader, ShardProblem
from viewer.geometry import overview_eye
from viewer.recon import Reconstruction, ReconstructionError, heldout_views, input_views, reconstruct_sample
from viewer.scene import FrameCache, SampleLayer, SplatLayer, add_input_views, depth_views_of, sample_frame

log = logging.getLogger(__name__)

ALL_SHARDS = "all shards"
MAX_LISTED = 400  # samples in the dropdown at once; the filters narrow the rest
STATUSES = (sl.ALL, *layout.STATUSES)


class ViewerApp:
    """What `pipeline view` shows. Exactly one of `dataset` and `reconstruction` is given."""

    def __init__(self, server: Any, dataset: Dataset | None = None, reconstruction: Reconstruction | None = None,
                 metrics: dict | None = None, checkpoint: str | None = None, key: str | None = None,
                 device: str | None = None):
        self.server, self.ds, self.recon = server, dataset, reconstruction
        self.metrics, self.checkpoint, self.device = metrics, checkpoint, device
        self.lock = threading.RLock()
        self.gen = 0
        self.reader: SampleReader | None = None
        self.layer: SampleLayer | None = None
        self.splats = SplatLayer(server.scene, "/splats")
        self.shown: dict[str, sl.Entry] = {}
        self.rows: dict[int, list[sl.Entry]] = {}
        self.metric_entries = sl.entries_from_metrics(metrics) if metrics else []
        self.frames = FrameCache(self._build_frame, size=6)
        self._quiet = False
        self.workdir = Path(tempfile.mkdtemp(prefix="pipeline-view-"))
        server.scene.set_up_direction("+z")
        server.scene.add_grid("/grid", width=4.0, height=4.0, cell_size=0.25, position=(0.0, 0.0, -0.5))
        gui = server.gui
        self.status = gui.add_markdown("")
        if dataset is not None:
            self._dataset_gui(gui)
        self.time = TimeControls(gui, self.on_time)
        if dataset is not None:
            with gui.add_folder("Points"):
                self.depth = gui.add_dropdown("depth points", ["all", "none"], initial_value="all")
                self.images = gui.add_checkbox("images on frustums", True)
            self.depth.on_update(lambda _: self.redraw())
            self.images.on_update(lambda _: self.redraw())
            if checkpoint:
                with gui.add_folder("Model"):
                    self.recon_button = gui.add_button("reconstruct this sample")
                    self.recon_info = gui.add_markdown(f"checkpoint: `{_md_escape(checkpoint)}`")
                self.recon_button.on_click(lambda _: self.reconstruct_selected())
            self._start(key)
        else:
            self._show_reconstruction()

    # -- dataset panel -------------------------------------------------------------------------
    def _dataset_gui(self, gui: Any) -> None:
        listing = self.ds.listing()
        committed = listing.committed
        shard_opts = [ALL_SHARDS] + [s.label() for s in listing.shards]
        self.shard_of = {s.label(): s.number for s in listing.shards}
        with gui.add_folder("Dataset"):
            partial = len(listing.shards) - len(committed)
            text = (f"**{_md_escape(self.ds.url)}**  \n{len(committed)} committed shard(s), {partial} partial"
                    + (f"  \n{len(self.metric_entries)} scored sample(s) in --metrics" if self.metrics else ""))
            for p in listing.problems[:5]:
                text += f"  \n⚠ {_md_escape(p)}"
            self.ds_info = gui.add_markdown(text)
            first = committed[0].label() if committed else ALL_SHARDS
            self.shard = gui.add_dropdown("shard", shard_opts, initial_value=ALL_SHARDS if self.metrics else first)
            self.shard_info = gui.add_markdown("")
            self.scan = gui.add_button("read every shard's rows", hint="lists the samples of all shards")
            self.status_dd = gui.add_dropdown("status", STATUSES, initial_value=sl.ALL)
            self.reason_dd = gui.add_dropdown("reason", [sl.ALL], initial_value=sl.ALL)
            sorts = [sl.SHARD_ORDER, *sl.SORTS] if self.metrics else [sl.SHARD_ORDER]
            self.sort_dd = gui.add_dropdown("sort", sorts, initial_value=sorts[1] if self.metrics else sorts[0])
            self.sample_dd = gui.add_dropdown("sample", ["(none)"])
            self.sample_info = gui.add_markdown("")
        self.shard.on_update(lambda _: self._quiet or self.on_shard())
        self.scan.on_click(lambda _: threading.Thread(target=self.scan_all, daemon=True).start())
        for dd in (self.status_dd, self.reason_dd, self.sort_dd):
            dd.on_update(lambda _: self._quiet or self.refresh_samples())
        self.sample_dd.on_update(lambda _: self._quiet or self.on_sample())

    def _start(self, key: str | None) -> None:
        """Show the dataset's first committed shard and its first ok sample (or `--key`)."""
        if key is not None:
            self._goto_key(key)
            return
        self.on_shard()

    def _goto_key(self, key: str) -> None:
        hits = [e for e in self.metric_entries if e.key == key]
        shards = [hits[0].shard] if hits else [s.number for s in self.ds.listing().committed]
        for n in shards:
            self._load_rows(n)
            if any(e.key == key for e in self.rows.get(n, [])) or hits:
                label = next((lab for lab, num in self.shard_of.items() if num == n), ALL_SHARDS)
                self._quiet = True
                self.shard.value = label
                self._quiet = False
                self.on_shard(prefer=key)
                return
        self.set_status(f"--key {key}: not found in any committed shard; showing the first sample")
        self.on_shard()

    def _load_rows(self, n: int) -> str | None:
        """Shard n's rows into the table; the problem as text when the shard cannot be read."""
        if n in self.rows:
            return None
        try:
            self.rows[n] = sl.join(sl.entries_from_rows(self.ds.rows(n)), self.metrics)
        except ShardProblem as exn:
            return str(exn)
        return None

    def on_shard(self, prefer: str | None = None) -> None:
        choice = self.shard.value
        if choice == ALL_SHARDS:
            self.shard_info.content = (f"{len(self.rows)} shard(s) read so far"
                                       + ("; scored samples from --metrics" if self.metrics else
                                          "; press the button to read every shard's rows"))
        else:
            n = self.shard_of.get(choice)
            if n is None:
                return  # not an option this server made
            problem = self._load_rows(n)
            self.shard_info.content = self._shard_text(n, problem)
        self.refresh_samples(prefer)

    def _shard_text(self, n: int, problem: str | None) -> str:
        entry = self.ds.entry(n)
        head = f"shard {n:06d}: **{entry.state if entry else '?'}**"
        if problem:
            return f"{head}  \n⚠ {_md_escape(problem)}"
        st = self.ds.stats(n)
        reasons = ", ".join(f"{_md_escape(k)} {v}" for k, v in sorted((st.get("reasons") or {}).items()))
        idx = "" if entry is None or entry.has_index is not False else "  \nno member index: tar headers scanned"
        try:
            self.ds.members(n)  # the member index against the tar (one small read, cached)
        except ShardProblem as exn:
            idx += f"  \n⚠ {_md_escape(exn)}"
        return (f"{head}: {st.get('ok', '?')} ok, {st.get('failed', '?')} failed, {st.get('rejected', '?')} rejected"
                + (f"  \nreasons: {reasons}" if reasons else "") + idx)

    def scan_all(self) -> None:
        shards = [s.number for s in self.ds.listing().committed]
        bad = 0
        for i, n in enumerate(shards):
            bad += self._load_rows(n) is not None
            if i % 25 == 24 or i == len(shards) - 1:
                self.shard_info.content = f"read {i + 1} of {len(shards)} shard(s); {bad} unreadable"
        if self.shard.value == ALL_SHARDS:
            self.refresh_samples()

    def _entries(self) -> list[sl.Entry]:
        if self.shard.value == ALL_SHARDS:
            merged = {(e.shard, e.key): e for e in self.metric_entries}
            for lst in self.rows.values():
                merged.update({(e.shard, e.key): e for e in lst})
            return list(merged.values())
        n = self.shard_of.get(self.shard.value)
        if n in self.rows:
            return self.rows[n]
        return [e for e in self.metric_entries if e.shard == n]

    def refresh_samples(self, prefer: str | None = None) -> None:
        entries = self._entries()
        self._quiet = True
        try:
            self.reason_dd.options = [sl.ALL, *sl.reasons(entries, self.status_dd.value)]
            picked = sl.select(entries, self.status_dd.value, self.reason_dd.value, self.sort_dd.value)
            shown = picked[:MAX_LISTED]
            self.shown = {e.label(self.sort_dd.value): e for e in shown}
            labels = list(self.shown) or ["(none)"]
            first = next((lab for lab, e in self.shown.items() if e.key == prefer), None)
            if first is None:
                first = next((lab for lab, e in self.shown.items() if e.status == layout.STATUS_OK), labels[0])
            self.sample_dd.options = labels
            self.sample_dd.value = first
        finally:
            self._quiet = False
        more = f" (the first {MAX_LISTED}; narrow with the filters)" if len(picked) > MAX_LISTED else ""
        self.set_status(f"{len(picked)} sample(s) match{more}")
        self.on_sample()

    # -- one sample ----------------------------------------------------------------------------
    def on_sample(self) -> None:
        entry = self.shown.get(self.sample_dd.value)
        with self.lock:
            self.gen += 1
            gen = self.gen
            self._clear()
        if entry is None:
            self.sample_info.content = "no sample selected"
            return
        text = f"**{_md_escape(entry.key)}** (shard {entry.shard:06d}): {entry.status}"
        if entry.reason:
            text += f" — {_md_escape(entry.reason)}"
        if entry.detail:
            text += f"  \n{_md_escape(str(entry.detail)[:300])}"
        if entry.metrics:
            text += "  \n" + ", ".join(f"{k} {v:.2f}" for k, v in entry.metrics.items() if np.isfinite(v))
        if entry.status not in (layout.STATUS_OK, None):
            self.sample_info.content = text + "  \nnothing to draw: a failed or rejected sample has no images"
            return
        self.sample_info.content = text + "  \nreading…"
        t0 = time.perf_counter()
        try:
            reader = self.ds.sample(entry.shard, entry.key)
        except ShardProblem as exn:
            self.sample_info.content = text + f"  \n⚠ {_md_escape(exn)}"
            return
        with self.lock:
            if gen != self.gen:
                return
            self.reader = reader
            self.layer = SampleLayer(self.server.scene, reader)
            self.recon = None
        self.depth.options = ["all", "none", *[f"view {v}" for v in range(reader.V)]]
        self.sample_info.content = (text + f"  \n{reader.T} time(s) × {reader.V} view(s), "
                                    f"{reader.width}×{reader.height} px, framing {reader.framing}")
        anchor = reader.anchors()[0]
        self._aim(overview_eye(anchor, reader.c2w[0, 0, :3, 3]), anchor)
        self.time.set_times([float(x) for x in reader.meta["times"]])
        log.info("drew %s in %.2f s", entry.key, time.perf_counter() - t0)

    def _clear(self) -> None:
        if self.layer is not None:
            self.layer.remove()
        self.splats.remove()
        self.layer, self.reader, self.recon = None, None, None

    def _build_frame(self, k: tuple) -> Any:
        gen, t, depth, images = k
        reader = self.reader
        if reader is None or gen != self.gen:
            return None
        return sample_frame(reader, t, depth_views_of(depth, reader.V), images=images)

    def on_time(self, t: int) -> None:
        if self.ds is None:
            self._show_frame(t)
            return
        with self.lock:
            reader, gen = self.reader, self.gen
            if reader is None:
                return
            frame = self.frames.get((gen, t, self.depth.value, bool(self.images.value)))
            if frame is None or gen != self.gen or self.layer is None:
                return
            self.layer.show(frame)
            if self.recon is not None:
                self.splats.show(self.recon.splats(self.recon.frame_at(float(reader.meta["times"][t]))))
            if self.time.playing:
                self.frames.prefetch((gen, (t + 1) % reader.T, self.depth.value, bool(self.images.value)))
        problems = "  \n".join(_md_escape(p) for p in frame.problems[:3])
        self.time.label.content = (f"t = {t} (clip time {float(reader.meta['times'][t]):.3f}), "
                                   f"{len(frame.points)} depth points" + (f"  \n⚠ {problems}" if problems else ""))

    def redraw(self) -> None:
        self.on_time(int(self.time.slider.value))

    def reconstruct_selected(self) -> None:
        """`--checkpoint`: reconstruct the selected sample now; predicted splats beside the ground-truth
        images of the held-out views (the views the model did not get as inputs)."""
        reader, gen = self.reader, self.gen
        if reader is None:
            self.recon_info.content = "select a drawable sample first"
            return
        self.recon_button.disabled = True
        self.recon_info.content = f"reconstructing {_md_escape(reader.key)}…"
        t0 = time.perf_counter()
        try:
            rec = reconstruct_sample(self.checkpoint, reader, self.workdir / f"r{gen}", self.device)
        except ReconstructionError as exn:
            self.recon_info.content = f"⚠ {_md_escape(exn)}"
            return
        finally:
            self.recon_button.disabled = False
        held = heldout_views(rec, reader.V)
        with self.lock:
            if gen != self.gen:
                return
            self.layer.remove()
            self.layer = SampleLayer(self.server.scene, reader, views=held)
            self.recon = rec
        self.recon_info.content = (f"predicted {len(rec)} frame(s) of {len(rec.splats(0))} Gaussians in "
                                   f"{time.perf_counter() - t0:.1f} s; frustums: the {len(held)} held-out view(s) "
                                   f"with their ground-truth images; depth points off (the splats sit among them)")
        if self.depth.value != "none":
            self.depth.value = "none"  # redraws through its callback
        else:
            self.redraw()

    # -- reconstruction mode -------------------------------------------------------------------
    def _show_reconstruction(self) -> None:
        rec = self.recon
        views, why = input_views(rec)
        first = rec.splats(0)
        centre = first.centers.mean(0) if len(first) else np.zeros(3)
        add_input_views(self.server.scene, views, centre)
        self._aim(overview_eye(centre, views[0].c2w[:3, 3] if views else None), centre)
        info = rec.record
        self.set_status(f"**{_md_escape(rec.folder)}**  \n{len(rec)} frame(s)"
                        + (f", {_md_escape(info.get('family'))} checkpoint step {info.get('step')}" if info else "")
                        + (f"  \n{len(views)} input view(s) beside the splats" if views else
                           f"  \ninput views not shown: {_md_escape(why)}"))
        self.time.set_times(rec.times)

    def _show_frame(self, k: int) -> None:
        with self.lock:
            s = self.recon.splats(k)
            self.splats.show(s)
        self.time.label.content = f"frame {k} (clip time {self.recon.times[k]:.3f}), {len(s)} Gaussians"

    # -- helpers -------------------------------------------------------------------------------
    def _aim(self, eye: np.ndarray, target: np.ndarray) -> None:
        cam = self.server.initial_camera
        cam.position = tuple(float(x) for x in eye)
        cam.look_at = tuple(float(x) for x in target)
        cam.up = (0.0, 0.0, 1.0)
        for client in self.server.get_clients().values():
            client.camera.position = cam.position
            client.camera.look_at = cam.look_at

    def set_status(self, text: str) -> None:
        self.status.content = text

    def close(self) -> None:
        """Stop the player thread and drop the scratch folder of on-the-spot reconstructions."""
        import shutil

        self.time.stopped.set()
        shutil.rmtree(self.workdir, ignore_errors=True)
