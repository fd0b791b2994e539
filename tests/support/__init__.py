"""Plain helpers shared by the tests, the benchmarks and scripts/make_hostile_corpus.py.

Fixtures stay in the conftest.py files (pytest finds them); everything else a test module needs
from elsewhere comes from here, never from a sibling test module:

- `paths`: the repository, the committed model and the shared NIH sample;
- `procs`: `python -m service` / `python -m gateway_flask` subprocesses on free loopback ports;
- `servers`: the API in a thread of the test process (uvicorn on a loopback socket);
- `images`: synthetic chest X-rays, encoders, a DICOM writer, sample uploads;
- `samples`: generated inputs that are not chest X-rays;
- `models`: tiny ONNX models with matching model cards;
- `http`: /metrics scraping, batch predictions, the web app's upload form;
- `loadgen`: a small closed-loop load generator;
- `browser`: headless Chromium for the browser tests;
- `manifests`: render, validate and police the Kubernetes manifests (deploy/kubernetes).
- `pacs`: CR DICOM files with patient tags, an API restartable on one loopback port, and a
  loopback-only network namespace (Orthanc and DICOM listener tests); `orthanc_scenario`: our API +
  a real Orthanc with the plugin, run inside that namespace by tests/integrations/test_orthanc.py.
"""
