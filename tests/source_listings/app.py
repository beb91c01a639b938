# Source: 1.2 Flaskによる推論API — 「Flask基本セットアップ」, app.py
# The source's listing as printed, indentation restored (it was lost in transfer); nothing else changed.
# app.py - 基本的なFlaskアプリケーション
from flask import Flask, request, jsonify

app = Flask(__name__)

@app.route('/health', methods=['GET'])
def health_check():
    """ヘルスチェックエンドポイント"""
    return jsonify({
        'status': 'healthy',
        'version': '1.0.0'
    })

@app.route('/predict', methods=['POST'])
def predict():
    """予測エンドポイント"""
    data = request.get_json()
    # 簡易的な応答(後でモデル推論に置き換え)
    return jsonify({
        'prediction': 'sample',
        'input_received': data
    })

if __name__ == '__main__':
    app.run(debug=True, host='0.0.0.0', port=5000)
