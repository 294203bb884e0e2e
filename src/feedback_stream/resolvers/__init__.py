"""Ways out for feedback that no logged response answers (at the edge, never in the core).

* :mod:`~feedback_stream.resolvers.prediction`: ask the predictor's own
  prediction URL for the prediction of the feedback's ``request``;
* :mod:`~feedback_stream.resolvers.elasticsearch`: look the response up by
  puid in the request logger's indices.
"""

from feedback_stream.resolvers.prediction import PredictionResolver, parse_prediction_urls

__all__ = ["PredictionResolver", "parse_prediction_urls"]
