"""One module per notebook of the chain: its orchestration and policy, so that a notebook is
narrative, parameters, one or two step calls and plots. Only notebooks, `tvad.pipeline` and
`tvad.cli` import these.

    dataset     01_dataset_construction   run_dataset
    ahd         02_ahd_training           run_stage1, examples
    sft         03_rae_sft                run_stage2
    evaluation  04_evaluation             run_evaluation
    figures     05_figures                run_figures
"""
