from pipeline.model import load_model


def test_registry_serves_champion(registry, trained):
    model = load_model(registry.champion_uri, registry.tracking_uri)
    assert model.version == registry.version
    assert model.alias == "champion"
    assert (model.predict_frame(trained.test) == trained.model.predict_frame(trained.test)).all()
