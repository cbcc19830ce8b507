"""Monitor tab: drift alarms, histograms against the baseline, review rate, compute vs wall time."""
from __future__ import annotations

import math

from demos.context import AppContext
from demos.monitor import drift_figure, review_rate_figure

DRIFT_COLUMNS = ["statistic", "reference", "n ref", "n recent", "ref mean", "recent mean", "PSI", "KS p", "alarm"]
TIMING_COLUMNS = ["pipeline", "compute median ms", "wall median ms", "busy", "results"]
TRANSPORT_COLUMNS = ["live connection", "count since start", "what it means"]
TRANSPORT_MEANING = {
    "audio_chunks_received": "microphone chunks that arrived, in order",
    "audio_chunks_lost": "chunks that never arrived (a gap: the transcript is cut there, not stitched)",
    "audio_gaps": "places where chunks went missing",
    "audio_chunks_refused": "late, repeated or unusable chunks, or refused because recognition was too far behind",
    "frames_received": "camera frames that arrived",
    "frames_skipped": "frames replaced by a newer one while the model was busy (video keeps only the newest)",
    "frames_refused": "unusable frames (not an image, too large)",
    "messages_refused": "malformed or unknown messages",
    "connections_refused": "connections without the page's login or token",
}


def drift_rows(ctx: AppContext) -> list[list]:
    return [
        [r.stat, r.reference_source, r.n_reference, r.n_recent, _f(r.reference_mean), _f(r.recent_mean),
         _f(r.psi), _f(r.ks_p, 4), "DRIFT" if r.alarm else ""]
        for r in ctx.monitor.drift_table()
    ]


def timing_rows(ctx: AppContext) -> list[list]:
    rows = []
    for name in ctx.monitor.pipelines():
        t = ctx.monitor.timing(name)
        busy = t["busy_fraction"]
        rows.append([name, _f(t["compute_median_ms"], 1), _f(t["wall_median_ms"], 1),
                     f"{busy:.0%}" if math.isfinite(busy) else "", t["n"]])
    return rows


def transport_rows(ctx: AppContext) -> list[list]:
    """The live connections' counters: what arrived, what went missing, what was refused."""
    counts = ctx.monitor.counts("live/")
    return [[name, counts.get(f"live/{name}", 0), meaning] for name, meaning in TRANSPORT_MEANING.items()]


def alarm_markdown(ctx: AppContext) -> str:
    alarms = [r for r in ctx.monitor.drift_table() if r.alarm]
    if not alarms:
        return "No drift alarm. (PSI > {:.2f} and KS p < {:.2g} on {}+ values raise one.)".format(
            ctx.settings.monitor.psi_alarm, ctx.settings.monitor.ks_p_alarm, ctx.settings.monitor.min_samples)
    lines = [f"## DRIFT ALARM on {len(alarms)} statistic(s)"]
    for r in alarms:
        lines.append(
            f"- **{r.stat}**: mean {r.reference_mean:.3g} ({r.reference_source}) → {r.recent_mean:.3g} now "
            f"(PSI {r.psi:.2f}, KS p={r.ks_p:.1e}). The live inputs no longer look like what the model was "
            "checked on: its confidence may be wrong; review more, collect samples of the new conditions, retrain."
        )
    return "\n".join(lines)


def refresh(ctx: AppContext):
    """Everything the tab shows, in the order of its outputs."""
    return (alarm_markdown(ctx), drift_rows(ctx), drift_figure(ctx.monitor), review_rate_figure(ctx.monitor),
            timing_rows(ctx), transport_rows(ctx))


def _f(x: float, digits: int = 3) -> float | str:
    return round(float(x), digits) if math.isfinite(x) else ""
