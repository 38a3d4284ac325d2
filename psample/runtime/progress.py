"""Progress bars: where one is shown, and the one bar every run uses.

Every long run (draws, warm-up, particle populations, training, graph estimates) goes through
the chunk driver (:mod:`psample.runtime.driver`), which shows this module's bar; ``progress=True``
(the default everywhere, DESIGN §10) asks for it.

Where a bar is shown (:func:`shows_progress`)
---------------------------------------------
Where someone watches: standard error is a terminal, or the code runs inside a Jupyter kernel
(notebook, JupyterLab, VS Code, Colab; :func:`in_notebook`). Never in a pipe, a log file or CI,
and only on process 0 of a multi-process (``jax.distributed``) run. In a notebook the bar is
tqdm's widget (``tqdm.notebook``) when ``ipywidgets`` is installed, else tqdm's text bar on the
cell's standard error.

What it shows (:func:`progress_bar`)
------------------------------------
* Before the first chunk returns, ``compiling``: the first chunk carries the compilation of the
  run, which can take longer than the run itself.
* The rate and the time left count from the end of the first chunk: the rate is the steps since
  then over the time since then, as of the last chunk (the run's average, not the compilation's), less the time the
  driver spent compiling chunks of a new length (``leave_out``), so the first estimate of the
  time left is already one of running speed. The elapsed time is the wall time since the bar
  appeared, compilation included.
* The last line stays (``leave=True``), with the steps done and the average rate; a run stopped
  before its end (Ctrl-C, an error) leaves its line where it stopped (red in a notebook).
* A *fraction* bar (``total=1.0``) for runs that only know how far along they are, not how many
  steps are left: adaptive tempered SMC, whose temperature goes from 0 to 1 in steps it chooses
  as it goes. It shows the fraction reached (``0.372/1``) and the elapsed time, no rate and no
  time left (the temperature does not advance at a constant speed).

Limits
------
The time left of a run whose steps change in cost (a warm-up that adapts a step size, say) is
that of the average step so far. Detecting a notebook reads ``IPython.get_ipython()`` only when
IPython is already imported (it always is in a kernel); Qt consoles and Spyder get the text bar.
"""

from __future__ import annotations

import functools
import os
import sys

import jax

__all__ = ["shows_progress", "in_notebook", "progress_bar", "FRACTION_FORMAT"]

#: The layout of a fraction bar (total 1.0): the fraction reached, the elapsed time, the postfix.
FRACTION_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.3f}/{total:.0f} [{elapsed}{postfix}]"
#: What the bar says until the first chunk (and so the compilation) is done.
COMPILING = "compiling"


def in_notebook() -> bool:
    """Whether this code runs inside a Jupyter (IPython) kernel.

    Reads ``IPython.get_ipython()`` only if IPython is already imported (it is in every kernel):
    a kernel's shell has a ``kernel`` (ipykernel's ``ZMQInteractiveShell``) or was configured by
    ``IPKernelApp``. A plain ``ipython`` in a terminal is not a kernel (its terminal shows the bar).
    """
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return False
    try:
        shell = get_ipython()
    except Exception:  # a half-initialised IPython: no kernel we can draw in
        return False
    if shell is None:
        return False
    if getattr(shell, "kernel", None) is not None:
        return True
    try:
        return "IPKernelApp" in shell.config
    except Exception:
        return False


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def shows_progress(progress: bool) -> bool:
    """Whether a run with ``progress=progress`` shows a bar here.

    ``progress`` is true and someone watches: standard error is a terminal or this is a Jupyter
    kernel (:func:`in_notebook`); and this is process 0 (``jax.process_index() == 0``), so a
    multi-process run shows one bar, not one per process. Off in pipes, log files and CI.
    """
    if not progress:
        return False
    if not (_is_terminal(sys.stderr) or in_notebook()):
        return False
    return jax.process_index() == 0


def _qt_console() -> bool:
    """Qt consoles and Spyder run a kernel but draw no widgets (tqdm.autonotebook's rule)."""
    return any(name == "QT_API" or name.startswith("SPYDER") for name in os.environ)


def _base_class(notebook: bool):
    """tqdm's widget bar in a notebook with ipywidgets, its text bar elsewhere."""
    if notebook and not _qt_console():
        try:
            import tqdm.notebook
        except ImportError:  # pragma: no cover - tqdm.notebook imports IPython, present in a kernel
            pass
        else:
            if tqdm.notebook.IProgress is not None:  # ipywidgets is installed
                return tqdm.notebook.tqdm
    import tqdm.std

    return tqdm.std.tqdm


@functools.cache
def _bar_class(base):
    class Bar(base):
        """A tqdm bar whose rate and time left start after the first chunk (its compilation)."""

        def __init__(self, *args, **kwargs):
            self._clock = None  # (time, n) when the first chunk was done
            self._updated = None  # time of the last update
            self._left_out = 0.0  # seconds spent compiling between the first and the last update
            self._pending = 0.0  # seconds spent compiling since the last update
            super().__init__(*args, postfix=COMPILING, **kwargs)

        def update(self, n=1):
            if self.disable:
                return None
            if self._clock is None:  # the first chunk: compilation and all; the clock starts now
                now = self._time()
                if self.postfix == COMPILING:
                    self.postfix = ""
                self.n += n
                self.last_print_n, self.last_print_t = self.n, now
                self._clock = (now, self.n)
                self._updated = now
                self.refresh()
                return True
            self._updated = self._time()
            self._left_out, self._pending = self._left_out + self._pending, 0.0
            return super().update(n)

        def leave_out(self, seconds: float) -> None:
            """Leave ``seconds`` (a later compilation: a chunk of a new length) out of the rate."""
            if self._clock is not None:
                self._pending += seconds

        def close(self):
            if not self.disable and self.total and abs(self.n - self.total) <= 1e-9 * self.total:
                self.n = self.total  # a fraction bar's sum of increments, rounded
            return super().close()

        @property
        def format_dict(self):
            d = super().format_dict
            if self._clock is None:
                d["rate"] = 0.0  # unknown: no rate, no time left (not 0 / compile time)
            else:
                seconds = self._updated - self._clock[0] - self._left_out  # as of the last update
                d["rate"] = (self.n - self._clock[1]) / seconds if seconds > 0 else 0.0
            return d

    Bar.__name__ = Bar.__qualname__ = f"Psample{base.__name__.capitalize()}Bar"
    return Bar


def progress_bar(total, enabled: bool, desc: str, unit: str, *, fraction: bool = False):
    """The bar of one run (a tqdm object; a disabled one where :func:`shows_progress` says no).

    Parameters
    ----------
    total
        Steps the run will take, ``None`` when unknown; with ``fraction`` the end of the
        fraction (normally ``1.0``).
    enabled
        The run's ``progress`` argument.
    desc, unit
        tqdm's description and unit (``"sampling"``, ``"draw"``: the rate reads ``draw/s``).
    fraction
        A fraction bar (module docstring): advanced by the fraction reached, shown with
        :data:`FRACTION_FORMAT`.

    Returns
    -------
    tqdm.std.tqdm or tqdm.notebook.tqdm
        Advanced with ``update(increment)`` after each chunk; ``set_postfix`` and ``close`` as
        tqdm's. The last line stays after ``close``.
    """
    show = shows_progress(enabled)
    notebook = show and in_notebook()
    cls = _bar_class(_base_class(notebook))
    kwargs = {"bar_format": FRACTION_FORMAT} if fraction else {"unit": unit}
    return cls(total=total, desc=desc, disable=not show, leave=True, dynamic_ncols=not notebook, **kwargs)
