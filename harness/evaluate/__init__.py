"""``harness evaluate``'s flow: its options (:mod:`.options`), the plan (:mod:`.plan`: files, names, runs
already done) and the evaluation's named steps (:mod:`.run`)."""
