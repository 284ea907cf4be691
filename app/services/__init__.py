"""The service layer: all logic, permission checks and tenant scoping.

REST blueprints and gRPC servicers call these functions and nothing else.  The
modules import neither Flask nor grpc.  Each function takes the SQLAlchemy
session first and keywords after, with the acting principal (``actor``) as an
explicit argument; functions ``flush()`` but never ``commit()``: the edge owns
the transaction.
"""
