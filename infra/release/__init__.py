"""The release domain, one module per concern (no import circles: each imports only those above it).

    model.py        pure: revision names, traffic tables, approvals and the share rule (the program uses it)
    state.py        the recorded release state, State/Outcome/Step, the `Kind` interface, exit codes, errors
    lock.py         the stack lock
    backends.py     where config lives and how `pulumi up` runs: Automation API, memory
    effects.py      real effects: Cloud Run jobs and operations, git tag, the live gate, 0 % verification
    emergency.py    the emergency rollback's rules (needs only service names and stable revisions)
    bake.py         bake windows: opened at finalize, closed when over, watched, rolled back
    backup.py       Cloud SQL backup before migrate, the restore drill
    load_test.py    the load test step's job and verdict
    steps.py        every step of a release, one function each
    revision.py     release kind: candidate revisions (Release, its step table STEPS, plan, resume)
    flag.py         release kind: a feature-flag ramp (FlagRelease, FLAG_STEPS)
    driver.py       the reconcile loop over a kind's step table; the dry run
    cli/            the commands on top: rollout, approve, status, rollback, bake, restore-drill

A new release kind is one module like flag.py: a class implementing `state.Kind` whose `steps` is its
table of `state.Step` rows (reusing steps.py), and a branch in cli/rollout.py that builds it.
"""
