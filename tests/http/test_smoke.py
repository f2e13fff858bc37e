def test_health_reports_reachable_database(api, backend):
    response = api.get("/health")
    assert response.status == 200
    assert response.data["database"] == {"reachable": True, "backend": backend,
                                         "server": response.data["database"]["server"],
                                         "schema": 10 if backend == "mysql" else 9}
