"""API Gateway: HTTP routes today (apigatewayv2 and REST APIs next) and the triggers that serve them."""
