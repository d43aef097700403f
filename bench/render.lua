-- wrk script: POST a render request for the benchmark prompt.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"variables": {"name": "Ada", "place": "Paris"}}'
