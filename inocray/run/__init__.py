"""Running: the commands that drive the engines, the workers and Tune.

    run_sweep(spec, run_dir)    the launcher (_launch.py): Ray, the engines (_engines.py), the
                                measurements, the worker pool and Tune; one trial is _trial.py
    check / slots               does the sweep fit its cluster, how many trials at once (_resources.py)
    summarize(run_dir, spec)    what `inocray run` prints at the end (_summary.py)
    log_fit(spec, fit)          the fit to the sweep's experiment trackers (_tracking.py)
    run_progress(run_dir)       `inocray status` from a run directory's files (_status.py)
    screen(spec, candidates)    `inocray screen`: elicitation of many prompts (_screen.py)
    search(spec, candidates)    `inocray search`: screen, halving on Tune, confirm (_search.py;
                                the scheduler and a stopped trial: _halving.py)
    make_data(spec, ...)        `inocray make-data`: a teacher writes training rows (_make_data.py)
    submit_sweep(...)           `inocray submit` and the job commands, through Ray Jobs (_jobs.py)
"""

from inocray.run._candidates import Candidate, read_candidates
from inocray.run._jobs import follow_logs, job_info, job_logs, load_cluster_spec, stop_job, submit_sweep
from inocray.run._launch import run_sweep
from inocray.run._make_data import MadeData, make_data
from inocray.run._resources import check, slots
from inocray.run._screen import default_out_dir, save_screen, screen, screen_text
from inocray.run._search import SearchOptions, search
from inocray.run._status import RunProgress, run_progress
from inocray.run._summary import summarize
from inocray.run._tracking import log_fit

__all__ = ["Candidate", "MadeData", "RunProgress", "SearchOptions", "search", "check", "default_out_dir", "follow_logs",
           "job_info", "job_logs", "load_cluster_spec", "log_fit", "make_data", "read_candidates", "run_progress", "run_sweep",
           "save_screen", "screen", "screen_text", "slots", "stop_job", "submit_sweep", "summarize"]
