"""Files, wherever they lie: a folder on this machine or an ``s3://`` prefix of an S3-compatible store.

- ``locations``: :class:`~db.storage.locations.Location`, a local path or an ``s3://`` URL behind one
  interface (join, read, list, copy here, write a folder there through a workspace), and the check a job
  makes that its output holds no earlier results;
- ``objects``: the object-store client, the one module that talks to S3 (credentials from the standard
  variables only, errors that name the object and never a secret);
- ``blobs``: the content-addressed image store (a folder, or a prefix with a local cache);
- ``model_files``: model folders kept in the object store, copied into each machine's cache;
- ``export_files``: finished exports where they lie, read by the web app.
"""
