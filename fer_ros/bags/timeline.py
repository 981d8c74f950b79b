"""The emotion timeline of a replay: each track's smoothed class probabilities over bag time, as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plots import pyplot


def plot_timeline(tracks: dict[int, tuple[list[float], list[np.ndarray]]], classes: tuple[str, ...],
                  path: str | Path, max_tracks: int = 8, title: str = "") -> None:
    """One panel per track (the `max_tracks` seen longest), a line per class: probability vs seconds from start.

    tracks: track id -> (times in seconds from the bag start, smoothed probability vectors). Frames on
    which a track reported no face are gaps in its lines (`with_gaps`), not lines drawn across them.
    """
    plt = pyplot()
    shown = sorted(sorted(tracks, key=lambda k: -len(tracks[k][0]))[:max_tracks])
    fig, axes = plt.subplots(max(1, len(shown)), 1, figsize=(10, 0.6 + 1.9 * max(1, len(shown))), sharex=True,
                             squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, track in zip(axes[:len(shown), 0], shown, strict=True):
        times, probs = with_gaps(*tracks[track])
        for i, name in enumerate(classes):
            ax.plot(times, probs[:, i], ".-" if len(times) < 30 else "-", color=colors(i % 10), label=name,
                    linewidth=1.2, markersize=3)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"face {track}")
        ax.grid(alpha=0.3)
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no face was tracked", ha="center", va="center", transform=axes[0, 0].transAxes)
        axes[0, 0].set_yticks([])
    else:
        axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        if len(tracks) > len(shown):
            axes[-1, 0].annotate(f"{len(tracks) - len(shown)} shorter tracks not shown", (1.0, -0.35),
                                 xycoords="axes fraction", ha="right", fontsize=8)
    axes[-1, 0].set_xlabel("bag time (s from start)")
    fig.suptitle(title or "smoothed expression probabilities per tracked face")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def with_gaps(times, probs) -> tuple[np.ndarray, np.ndarray]:
    """(times, probs) with a NaN row wherever the time to the next sample is over 1.5 times the track's
    usual (median) step: a frame without the face, which matplotlib leaves as a gap."""
    times, probs = np.asarray(times, np.float64), np.asarray(probs, np.float64).reshape(len(times), -1)
    if len(times) < 3:
        return times, probs
    steps = np.diff(times)
    gaps = np.flatnonzero(steps > 1.5 * np.median(steps))
    return (np.insert(times, gaps + 1, times[gaps] + steps[gaps] / 2),
            np.insert(probs, gaps + 1, np.nan, axis=0))
