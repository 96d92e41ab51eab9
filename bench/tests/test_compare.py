"""bench.compare's figures."""


def test_the_benchmark_scores_agreed_and_single_rows_apart():
    from bench.compare import figures

    def scene(rows, union, hits_a, hits_b):
        per = lambda hits: {"hits": hits, "calls": {"total": 3, "made": 3, "cached": 0}, "elapsed_s": 1.0,  # noqa: E731
                            "readings": 2, "confirmed": [True]}
        return {"rows": rows, "union_hits": union, "command_s": 2.0, "signs": 2,
                "per_model": {"a": per(hits_a), "b": per(hits_b)}}

    row = lambda readers, agreed, real: {"readers": readers, "agreement": "exact" if agreed else "single",  # noqa: E731
                                         "agreed": agreed, "same_family": False, "confirmed": agreed >= 2,
                                         "real": real, "families": []}
    f = figures([scene([row(2, 2, True), row(1, 0, False), row(1, 0, True)], [True, True], [True, False],
                       [True, True])], ["a", "b"])
    assert (f["agreed_rows"], f["agreed_real"], f["single_rows"], f["single_real"]) == (1, 1.0, 2, 0.5)
    assert f["union_recall"] == 1.0 and f["models"]["b"]["recall"] == 1.0 and f["union_vs_best_model"] == 0
