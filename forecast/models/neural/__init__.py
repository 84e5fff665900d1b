"""The neural estimators: features (windows, scaling, calendar, text; the LightningDataModule),
network (encoders, fusion, heads, loss), system (the LightningModule) and estimator (fit/predict/save/load)."""
