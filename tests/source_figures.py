"""Figures that Markdown cells may quote without a committed output backing them: the source chapter's own
figures (always labelled 「教科書」 in the prose) and design constants a notebook states. One entry per notebook
stem; tests/test_prose_figures.py reads this list."""

SOURCE_FIGURES: dict[str, list[str]] = {
    "00_setup": [
        "100 MB",  # a fact, not a measurement: torchvision's ResNet-50 weights file (resnet50-11ad3fa6.pth) is ~98 MiB
        "10 秒",  # design constant: checks_00.PROBE_LIMIT_S, how long the health-probe check waits for one call
    ],
    "01_lifecycle_and_deployment_patterns": [
        # The textbook's latency targets (数分〜数時間 / 数十ms〜数秒 / 数ms, as the source writes them) are words
        # without a number, so the prose test needs no entry for them; they are labelled 教科書 in the tables.
        # Design constants of exercise 4's rules (solutions/01), the thresholds the check tests at their boundaries.
        "60,000 ms",
        "10 ms",
        "95 %",  # a definition, not a measurement: p95 is the value 95 % of the latencies are at or below
        "99 %",  # the same for p99
    ],
    "02_flask_inference_api": [],
    "03_fastapi_inference_api": [],
    "04_model_serialization": [
        "2 GB",  # a fact, not a measurement: protobuf's limit on one serialized message, why ONNX has external data
    ],
    "05_image_classification_api": [
        "平均 125 ms",  # the textbook's headline for ResNet-50 over 100 requests (labelled 教科書の値 in 8.2)
        "P99 180 ms",  # the same measurement's P99, from the textbook
        "20%",  # design constant: the digits model's held-out share (test_size=0.2 in course_lib.vision.digits)
    ],
    "06_making_the_image_api_fast": [
        "平均 125 ms",  # the textbook's headline for ResNet-50 over 100 requests (labelled 教科書の値 in section 6)
        "P99 180 ms",  # the same measurement's P99, from the textbook
        "20%",  # design constant: the digits model's held-out share (test_size=0.2 in course_lib.vision.digits)
    ],
    "07_scaling_out_with_ray_serve": [
        "5 ms",  # design constant: the batched deployments' batch_wait_timeout_s / max_wait_ms, set in the cells
        "1 秒",  # design constant: how often section 4 reads the replica count (watch_replicas sleeps 1 s)
        "0.1 秒",  # design constant: course_lib.clients.retrying_session's default backoff_s
    ],
    "08_monitoring_and_safe_releases": [
        "15 秒",  # a fact, not a measurement: a common Prometheus scrape_interval (the prose says "よく使う")
        "0.02 秒",  # design constant: one of course_lib.monitoring.LATENCY_BUCKETS, read as the example le="0.02"
        "1 ミリ秒",  # design constant: where LATENCY_BUCKETS start being dense (1 ms to 100 ms)
        "4 秒",  # design constant: the two load phases of section 1 (client_load's phases)
        "0.6 倍",  # design constant: how much darker section 3's shifted image stream is
        "0.05 ×",  # design constant: exercise 3's harmless shift (0.05 σ) that the KS test alone would flag
        # design constants of course_lib/prometheus/alerts.yml (SLO targets, burn-rate factors) and the 発展 cell's
        # SLO_SECONDS; "2 %" is arithmetic on them: 14.4 × 1 h ÷ 720 h = 2 % of a 30-day budget
        "99.9 %",
        "2 %",
        "6 倍",
        "20 ms",
    ],
}
