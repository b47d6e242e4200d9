"""PostgreSQL: models, migrations, the unit of work, and the embedded server for development.

Public API:
    db.uow.Database               app-role engine: unit_of_work(caller), system(), raw_connection()
    db.bootstrap.prepare_database create + migrate + app-role password; returns the app URL
    db.engine.make_engine, app_role_url
    db.embedded.start_embedded    embedded PostgreSQL under <data_dir>/pg
    db.models                     SQLAlchemy models of every table
"""
