"""batch-engine: a manifest of image/prompt pairs in, verified MP4 videos and a resumable ledger out.

The pipeline, one module a stage:

    manifest  -> validate the YAML, every problem at once, nothing sent
    submit    -> create tasks under the create gate (ratelimit) and record each task id
    poll      -> follow every task id with recordInfo until it succeeds or fails
    download  -> stream each result into <id>.mp4 (temp file, verify, atomic rename)
    ledger    -> every state change, appended as it happens, so a rerun resumes

`engine` wires the stages together, `client` is the only module that speaks HTTP to the
provider, `cli` is the only one that reads the environment, `report` shows the ledger.
"""

__version__ = "0.1.0"
