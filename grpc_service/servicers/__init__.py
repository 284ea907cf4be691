"""The ``taskforge.JobQueueService`` servicer: thin adapters over ``app.services``.

Each RPC converts the request (``grpc_service.convert``), calls one service
function inside one session scope of the runtime and converts the result back;
the interceptor supplies the actor and maps errors to status codes.  One mixin per
resource (``jobs``, ``queues``, ``workers``), joined in ``service``.
"""
