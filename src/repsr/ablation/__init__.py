"""``repsr ablate`` and ``repsr bn-study``: measure the paper's claims on your own budget.

An ablation spec (:mod:`.spec`) names a base config, the variants to compare and the seeds; every (variant,
seed) run (:mod:`.running`) is trained by the ordinary trainer with the same data, iterations and schedule (the
seed sets initialization, data order and augmentation), merged, and evaluated on the test sets; its
:class:`.record.RunRecord` is its ``run.json``. The report (:mod:`.report`) gives mean +- standard deviation over
seeds and each variant's paired difference from a reference variant (:mod:`.statistics`). Finished runs are never
redone, unfinished ones resume from their checkpoints, and the report is rewritten after every run, so a study
can live in the repository and continue from a fresh clone.

The BN study (:mod:`.bn_study`) compares, for a BN model trained without the switch, (i) population statistics
(what deployment uses), (ii) per-image batch statistics (what training saw), and (iii) the model trained with the
switch, and saves crops and difference maps where they differ most.
"""

from .bn_study import bn_study, run_scale
from .record import RunRecord
from .report import write_report
from .running import run_ablation, run_dir, run_variant
from .spec import AblationSpec, BNStudySpec, Variant, open_test_set, read_spec, spec_seeds, variant_config
from .statistics import last_quarter_gain, summarize, verdict

__all__ = ["AblationSpec", "BNStudySpec", "RunRecord", "Variant", "bn_study", "last_quarter_gain", "open_test_set",
           "read_spec", "run_ablation", "run_dir", "run_scale", "run_variant", "spec_seeds", "summarize",
           "variant_config", "verdict", "write_report"]
